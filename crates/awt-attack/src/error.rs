//! The attack crate's error type.

/// Why an attack could not run.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// A setting or an input that cannot be attacked, named.
    #[error("{0}")]
    Invalid(String),
    /// The model's logits are NaN or infinite: no accuracy, clean or robust, means anything.
    #[error(
        "the model's logits are not finite (NaN or ±inf) on a batch of {batch} inputs: its weights or activations overflow; no accuracy can be measured"
    )]
    NonFinite {
        /// Batch size of the offending call.
        batch: usize,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub(crate) fn invalid(s: impl Into<String>) -> AttackError {
    AttackError::Invalid(s.into())
}

/// Refuses logits `z: (n, k)` that hold a NaN or an infinity (their sum is then not finite; so is a
/// sum of logits large enough to overflow, which is just as unusable). Every attack checks each
/// forward pass with it.
pub fn finite_logits(z: &candle_core::Tensor) -> Result<(), AttackError> {
    let s = z.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if s.is_finite() { Ok(()) } else { Err(AttackError::NonFinite { batch: z.dim(0)? }) }
}
