//! Everything the binary writes for people and scripts: lines on standard output (a closed pipe
//! ends the program quietly, as ripgrep does; any other write failure is an error), JSON files with
//! their provenance fields, and progress bars.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output")]
pub(crate) struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    /// True when the reader went away (`awt inspect m | head -1`): not an error worth a message.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes one line to standard output.
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()).map_err(StdoutError)
}

/// `println!` that returns an error instead of panicking when standard output is closed or full.
macro_rules! say {
    ($($t:tt)*) => { $crate::output::line(format_args!($($t)*))? };
}
pub(crate) use say;

/// Writes `v` as pretty JSON, atomically.
pub(crate) fn write_json(p: &Path, v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v)? + "\n";
    awt_base::write_atomic(p, s.as_bytes()).with_context(|| format!("cannot write {}", p.display()))
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Adds the fields of the object `extra` to the object `v`.
pub(crate) fn merge_json(v: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}

/// An error and its causes on one line, joined by `: ` (errors keep their cause as `source()`).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out += &format!(": {c}");
        cause = c.source();
    }
    out
}

/// The data set's provenance as the typed records carry it.
pub(crate) struct DatasetFields {
    pub location: String,
    pub files: Vec<awt_runs::records::FileRecord>,
    pub verified: bool,
    pub unverified: Vec<String>,
    /// With `--validation`: (images held out, training images left).
    pub held_out: Option<(u64, u64)>,
}

impl DatasetFields {
    pub fn of(ds: &awt_data::Dataset) -> DatasetFields {
        let unverified = ds.provenance.unverified();
        DatasetFields {
            location: ds.provenance.location.clone(),
            files: ds
                .provenance
                .files
                .iter()
                .map(|f| awt_runs::records::FileRecord {
                    file: f.file.clone(),
                    sha256: f.sha256.clone(),
                    status: f.status.clone(),
                })
                .collect(),
            verified: unverified.is_empty(),
            unverified,
            held_out: ds.validation.as_ref().map(|v| (v.len() as u64, ds.train.len() as u64)),
        }
    }
}

/// The provenance fields every result file carries.
pub(crate) fn provenance_json(ds: &awt_data::Dataset) -> serde_json::Value {
    let unverified = ds.provenance.unverified();
    let mut v = serde_json::json!({
        "dataset_location": ds.provenance.location,
        "dataset_files": ds.provenance.files.iter().map(|f| serde_json::json!({"file": f.file, "sha256": f.sha256, "status": f.status})).collect::<Vec<_>>(),
        "dataset_verified": unverified.is_empty(),
        "dataset_unverified": unverified,
    });
    // Only with `--validation`, so records made without it keep their bytes.
    if let Some(val) = &ds.validation {
        v["validation_held_out"] = serde_json::json!(val.len());
        v["train_examples_after_hold_out"] = serde_json::json!(ds.train.len());
    }
    v
}

/// The git commit this binary was built from (`-dirty` when the tree had changes).
pub(crate) fn git_commit() -> &'static str {
    env!("AWT_GIT_COMMIT")
}

/// Hex SHA-256 of a canonical config string, shortened to 16 characters.
pub(crate) fn config_hash(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What a model file holds, as a 16-character hex SHA-256: every tensor's name, dtype, shape and
/// bytes, and its metadata but for the build that wrote it (`git_commit`), so the same weights
/// written again by another build hash the same and a change of any weight or setting does not.
/// (Hashing the file as lossy UTF-8 text, as this once did, mapped every invalid byte sequence of the
/// weights to one replacement character: most weight changes went unseen.)
pub(crate) fn model_hash(path: &Path, bytes: &[u8]) -> Result<String> {
    let bad = |e: safetensors::SafeTensorError| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display());
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(bad)?;
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(bad)?;
    let mut h = Sha256::new();
    let mut meta: Vec<(&String, &String)> =
        header.metadata().iter().flatten().filter(|(k, _)| *k != "git_commit").collect();
    meta.sort();
    for (k, v) in meta {
        h.update(format!("meta {}:{k}={}:{v}\n", k.len(), v.len()).as_bytes());
    }
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in tensors {
        h.update(
            format!("tensor {}:{name} {:?} {:?} {}\n", name.len(), t.dtype(), t.shape(), t.data().len()).as_bytes(),
        );
        h.update(t.data());
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// The hash older builds gave a model file (its bytes read as lossy UTF-8 text; see [`model_hash`]):
/// accepted only to continue what they saved (a search's state, IMP-AT's rounds, a transferred
/// ticket's teacher), so no work is lost to the change; never written.
pub(crate) fn legacy_text_hash(bytes: &[u8]) -> String {
    config_hash(&String::from_utf8_lossy(bytes))
}

/// Refuses, before allocating, work that would need more memory than the machine can give now
/// (`bytes`, an estimate of the peak), naming the setting that sized it and the estimate.
pub(crate) fn check_memory(setting: &str, bytes: f64) -> anyhow::Result<()> {
    let gb = |b: f64| b / 1e9;
    if let Some(avail) = awt_base::available_memory()
        && bytes > avail as f64
    {
        anyhow::bail!(
            "{setting}: needs about {:.1} GB of memory, {:.1} GB are available; lower it",
            gb(bytes),
            gb(avail as f64)
        );
    }
    Ok(())
}

/// The candle device `--device` names; an error that names the flag when it cannot be opened (a
/// binary built without CUDA, a missing GPU or driver). `auto` falls back to the CPU, saying so.
pub(crate) fn open_device(spec: awt_runs::DeviceSpec) -> Result<candle_core::Device> {
    use awt_runs::DeviceSpec;
    let cuda = |n: usize| -> Result<candle_core::Device> {
        if !candle_core::utils::cuda_is_available() {
            anyhow::bail!(
                "--device {spec}: this awt binary was built without CUDA (build one with `cargo xtask gpu-build`, \
                 see docs/reproducing.md)"
            );
        }
        candle_core::Device::new_cuda(n).with_context(|| format!("--device {spec}: cannot open CUDA device {n}"))
    };
    match spec {
        DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
        DeviceSpec::Cuda(n) => cuda(n),
        DeviceSpec::Auto => match cuda(0) {
            Ok(d) => Ok(d),
            Err(e) => {
                tracing::info!(reason = %chain(e.as_ref()), "--device auto: computing on the CPU");
                Ok(candle_core::Device::Cpu)
            }
        },
    }
}

/// How records name a device: `None` for the CPU (records made before devices were recorded ran
/// there), `cuda:N` / `metal:N` otherwise.
pub(crate) fn device_name(d: &candle_core::Device) -> Option<String> {
    match d.location() {
        candle_core::DeviceLocation::Cpu => None,
        candle_core::DeviceLocation::Cuda { gpu_id } => Some(format!("cuda:{gpu_id}")),
        candle_core::DeviceLocation::Metal { gpu_id } => Some(format!("metal:{gpu_id}")),
    }
}

/// Prints where a pruned network went and its density per layer.
pub(crate) fn report_pruned(net: &awt_nets::Net, out: &Path) -> Result<()> {
    let d = net.densities()?;
    let per: Vec<String> = d.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    say!(
        "wrote {} ({}, method {}): densities {}",
        out.display(),
        net.arch(),
        net.meta.get("method").map(String::as_str).unwrap_or("?"),
        per.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use candle_core::{Device, Tensor};

    use super::*;

    fn file(w: &[f32], meta: &[(&str, &str)]) -> Vec<u8> {
        let t = Tensor::from_vec(w.to_vec(), (w.len(),), &Device::Cpu).unwrap();
        let meta: BTreeMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        awt_base::safetensors_bytes(&[("fc1.weight".to_string(), t)], &meta).unwrap()
    }

    /// The model hash sees every weight (one mantissa byte that is invalid UTF-8 either way, which
    /// the old lossy-text hash could not tell apart) and every setting, but not the build that wrote
    /// the file; a file that is not safetensors is refused by name.
    #[test]
    fn the_model_hash_sees_every_weight_and_setting_but_not_the_build() {
        let p = Path::new("init.safetensors");
        let (a, b) = (f32::from_le_bytes([1, 0, 0x80, 0x3f]), f32::from_le_bytes([1, 0, 0x81, 0x3f]));
        let base = file(&[a, 2.0], &[("seed", "0"), ("git_commit", "abc")]);
        let nudged = file(&[b, 2.0], &[("seed", "0"), ("git_commit", "abc")]);
        assert_eq!(String::from_utf8_lossy(&base), String::from_utf8_lossy(&nudged), "the old hash's blind spot");
        let h = |bytes: &[u8]| model_hash(p, bytes).unwrap();
        assert_ne!(h(&base), h(&nudged), "a weight's change");
        assert_eq!(h(&base), h(&file(&[a, 2.0], &[("seed", "0"), ("git_commit", "def-dirty")])), "another build");
        assert_ne!(h(&base), h(&file(&[a, 2.0], &[("seed", "1"), ("git_commit", "abc")])), "a setting");
        assert_eq!(h(&base), h(&file(&[a, 2.0], &[("seed", "0")])), "a file without a commit hashes as one with it");
        assert_eq!(h(&base).len(), 16);
        let e = model_hash(p, b"not a model").unwrap_err().to_string();
        assert!(e.contains("init.safetensors") && e.contains("not a safetensors file"), "{e}");
    }
}
