//! The NTK crate's error type.

/// Why a kernel could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum NtkError {
    /// Inputs that cannot be used, named.
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
