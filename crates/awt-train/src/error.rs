//! Why training stopped: every variant names the setting, file or step at fault.

use std::path::{Path, PathBuf};

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss or a parameter became NaN or infinite.
    #[error("training diverged: non-finite {what} ({loss}) at epoch {epoch}, step {step} (global step {global}); {}", match checkpoint {
        Some(e) => format!("the checkpoint of epoch {e} in {dir} is intact (continue with --resume)"),
        None => format!("no checkpoint was written yet in {dir} (the first epoch did not finish)"),
    })]
    Diverged {
        /// Epoch (0-based).
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// Global optimiser step.
        global: u64,
        /// `loss` or `parameter <name>`.
        what: String,
        /// The offending value.
        loss: f64,
        /// Run folder.
        dir: String,
        /// The last epoch whose checkpoint is on disk, if any.
        checkpoint: Option<usize>,
    },
    /// A setting that cannot work. `setting` is the configuration key (the command-line flag
    /// without its dashes, `_` for `-`).
    #[error("{setting}: {why}")]
    Setting {
        /// The configuration key, e.g. `momentum`.
        setting: &'static str,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// A request that cannot be met (other than one setting).
    #[error("{0}")]
    Invalid(String),
    /// A run-folder file that cannot be read or written, or a folder in use.
    #[error("{}: {why}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        why: String,
        /// The error underneath (an I/O error, …), where there is one: the cause chain shows it
        /// after `why`.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A hook (mask upkeep, checkpointing, kernel tracking, ...) failed.
    #[error("{0}")]
    Hook(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An attack failed.
    #[error(transparent)]
    Attack(#[from] awt_attack::AttackError),
    /// Data could not be batched.
    #[error(transparent)]
    Data(#[from] awt_data::DataError),
}

impl TrainError {
    /// A hook's error, keeping it as the source.
    pub fn hook(e: impl std::error::Error + Send + Sync + 'static) -> TrainError {
        TrainError::Hook(Box::new(e))
    }
}

pub(crate) fn file_err(path: &Path, why: impl std::fmt::Display) -> TrainError {
    TrainError::File { path: path.to_path_buf(), why: why.to_string(), source: None }
}

impl TrainError {
    /// `what` failed on the run-folder file `path` because of `e`, kept as the source.
    pub fn file_io(
        path: &Path,
        what: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> TrainError {
        TrainError::File { path: path.to_path_buf(), why: what.into(), source: Some(Box::new(e)) }
    }
}

pub(crate) fn setting(setting: &'static str, why: impl Into<String>) -> TrainError {
    TrainError::Setting { setting, why: why.into() }
}

/// `v` must be finite and ≥ 0.
pub(crate) fn non_negative(name: &'static str, v: f64) -> Result<(), TrainError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(setting(name, format!("must be a finite number ≥ 0, got {v}")))
    }
}

/// `v` must be finite and > 0.
pub(crate) fn positive(name: &'static str, v: f64) -> Result<(), TrainError> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { Err(setting(name, format!("must be a finite number > 0, got {v}"))) }
}

/// `v` must lie in [0, 1).
pub(crate) fn fraction(name: &'static str, v: f64) -> Result<(), TrainError> {
    if (0.0..1.0).contains(&v) { Ok(()) } else { Err(setting(name, format!("must be in [0, 1), got {v}"))) }
}
