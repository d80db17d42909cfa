//! Small helpers shared by the subcommands: provenance strings, hashing, progress bars.

use std::path::PathBuf;

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
}

impl DataArgs {
    /// Loads the dataset; errors name the flag.
    pub(crate) fn load(&self) -> Result<awt_data::Dataset> {
        awt_data::load(&self.name, &awt_data::LoadOptions::from_env(self.data_dir.clone()))
            .with_context(|| format!("--data {}", self.name))
    }
}

/// The git commit this binary was built from (`-dirty` when the tree had changes).
pub(crate) fn git_commit() -> &'static str {
    env!("AWT_GIT_COMMIT")
}

/// Hex SHA-256 of a canonical config string, shortened to 16 characters.
pub(crate) fn config_hash(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
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
