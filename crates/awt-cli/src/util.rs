//! Small helpers shared by the subcommands: provenance strings, hashing, progress bars.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The dataset flags every data-reading subcommand shares.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DataArgs {
    /// Dataset name (see `awt data list`).
    #[arg(long = "data", value_name = "DATASET", default_value = "fashion-mnist-mini")]
    pub name: String,
    /// Look here first for the dataset's files (else AWT_DATA_DIR, the system dataset folder, the HF cache).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use files whose SHA-256 differs from the pinned one (the results record it).
    #[arg(long)]
    pub allow_checksum_mismatch: bool,
}

impl DataArgs {
    /// The flags for dataset `name` in the default places.
    pub(crate) fn named(name: String, data_dir: Option<PathBuf>) -> DataArgs {
        DataArgs { name, data_dir, allow_checksum_mismatch: false }
    }

    /// Loads the dataset; errors name the flag. Files not verified against a pinned checksum get a
    /// warning here, and every result file records them (`dataset_unverified`).
    pub(crate) fn load(&self) -> Result<awt_data::Dataset> {
        let opts = awt_data::LoadOptions {
            allow_checksum_mismatch: self.allow_checksum_mismatch,
            ..awt_data::LoadOptions::from_env(self.data_dir.clone())
        };
        let ds = awt_data::load(&self.name, &opts).with_context(|| format!("--data {}", self.name))?;
        let unverified = ds.provenance.unverified();
        if !unverified.is_empty() {
            tracing::warn!(dataset = %self.name, files = ?unverified, "files not verified against pinned checksums");
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "warning: --data {}: not verified against pinned checksums: {}; results record this",
                    self.name,
                    unverified.join(", ")
                );
            }
        }
        Ok(ds)
    }
}

/// Adds the fields of the object `extra` to the object `v`.
pub(crate) fn merge_json(v: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}

/// The provenance fields every result file carries.
pub(crate) fn provenance_json(ds: &awt_data::Dataset) -> serde_json::Value {
    let unverified = ds.provenance.unverified();
    serde_json::json!({
        "dataset_location": ds.provenance.location,
        "dataset_files": ds.provenance.files.iter().map(|f| serde_json::json!({"file": f.file, "sha256": f.sha256, "status": f.status})).collect::<Vec<_>>(),
        "dataset_verified": unverified.is_empty(),
        "dataset_unverified": unverified,
    })
}

impl DataArgs {
    /// Loads the dataset and checks that `net` can read its images and that its output has a
    /// logit for every label (a 5-class MLP cannot train on 10 classes).
    pub(crate) fn load_for(&self, net: &awt_nets::Net) -> Result<awt_data::Dataset> {
        let ds = self.load()?;
        let expect: usize = net.arch().input_shape().iter().product();
        if expect != ds.train.image_size() {
            anyhow::bail!(
                "--data {}: {} takes inputs of {expect} values ({:?}), its images are {:?}",
                self.name,
                net.arch(),
                net.arch().input_shape(),
                ds.train.shape
            );
        }
        let labels = ds.train.labels.iter().chain(&ds.test.labels).copied().max().map_or(0, |m| m as usize + 1);
        if net.arch().classes() < labels {
            anyhow::bail!(
                "--data {}: the dataset has {labels} classes but {} has {} outputs",
                self.name,
                net.arch(),
                net.arch().classes()
            );
        }
        Ok(ds)
    }
}

/// True when `a` and `b` name the same file: the same inode for existing files, else the same
/// canonical folder and name.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return x.dev() == y.dev() && x.ino() == y.ino();
    }
    let canon = |p: &Path| -> Option<PathBuf> {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// Refuses a command whose output file (`flag`, `out`) is one of its inputs (`(flag, path)`), also
/// through another path or a hard link: writing it would destroy the input.
pub(crate) fn refuse_overwriting_inputs(flag: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    for (iflag, input) in inputs {
        if same_file(out, input) {
            anyhow::bail!(
                "{flag} {} is the same file as {iflag} {}: writing it would destroy the input; choose another {flag}",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// The git commit this binary was built from (`-dirty` when the tree had changes).
pub(crate) fn git_commit() -> &'static str {
    env!("AWT_GIT_COMMIT")
}

/// Hex SHA-256 of a canonical config string, shortened to 16 characters.
pub(crate) fn config_hash(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}
