//! The attack crate's error type.

/// Why an attack could not run.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// A setting or an input that cannot be attacked, named.
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub(crate) fn invalid(s: impl Into<String>) -> AttackError {
    AttackError::Invalid(s.into())
}
