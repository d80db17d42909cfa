//! The crate's error type: every variant names the file or the setting at fault.

use std::path::PathBuf;

/// Why a dataset could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file is malformed, unreadable or fails its checksum.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
        /// The error underneath (an I/O error, …), where there is one: the cause chain shows it
        /// after `why`.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The dataset was found nowhere.
    #[error("dataset `{name}` not found. Tried:\n{}\n{hint}", tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n"))]
    NotFound {
        /// Dataset name.
        name: String,
        /// Every place tried, with why it did not work.
        tried: Vec<String>,
        /// How to get the data.
        hint: String,
    },
    /// A request that cannot be met (unknown name, bad range, ...).
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub(crate) fn file_err(path: &std::path::Path, why: impl Into<String>) -> DataError {
    DataError::File { path: path.to_path_buf(), why: why.into(), source: None }
}

/// `what` failed on `path` because of `e`, kept as the source.
pub(crate) fn file_io(
    path: &std::path::Path,
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> DataError {
    DataError::File { path: path.to_path_buf(), why: what.into(), source: Some(Box::new(e)) }
}
