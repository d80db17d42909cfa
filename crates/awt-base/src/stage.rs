//! The layer view of a feed-forward network: an ordered list of stages holding the live parameter
//! tensors. The NTK crate builds its structured kernel from this view; the networks crate produces
//! it. Neither knows the other.

use candle_core::Tensor;

/// One stage of a feed-forward network. Tensors are the live parameters (cloning a candle tensor
/// is cheap and keeps the autograd identity), so a computation built from a stage's weights
/// back-propagates into the network's variables.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `y = x (W ⊙ M)ᵀ + b`; `weight: (out, in)`, `bias: (out,)`, `mask` like `weight` (0/1).
    Linear {
        /// Parameter name prefix, e.g. `fc1` (tensors `fc1.weight`, `fc1.bias`).
        name: String,
        /// `(out, in)`, unmasked.
        weight: Tensor,
        /// `(out,)`.
        bias: Tensor,
        /// `(out, in)` of 0/1, or `None` for dense.
        mask: Option<Tensor>,
    },
    /// 2-D convolution with stride 1 and no padding; `weight: (out, in, kh, kw)`, `bias: (out,)`.
    Conv2d {
        /// Parameter name prefix, e.g. `conv1`.
        name: String,
        /// `(out, in, kh, kw)`, unmasked.
        weight: Tensor,
        /// `(out,)`.
        bias: Tensor,
        /// Like `weight` (0/1), or `None` for dense.
        mask: Option<Tensor>,
    },
    /// Elementwise max(x, 0).
    Relu,
    /// 2×2 max-pool, stride 2, floor mode.
    MaxPool2,
    /// 2×2 average pool, stride 2, floor mode.
    AvgPool2,
    /// `(b, c, h, w) → (b, c·h·w)`.
    Flatten,
}

impl Stage {
    /// The effective weight `W ⊙ M` (or `W` when dense), for stages that have one.
    pub fn effective_weight(&self) -> candle_core::Result<Option<Tensor>> {
        match self {
            Stage::Linear { weight, mask, .. } | Stage::Conv2d { weight, mask, .. } => Ok(Some(match mask {
                Some(m) => weight.mul(m)?,
                None => weight.clone(),
            })),
            _ => Ok(None),
        }
    }
}

/// A network that exposes its stages in forward order.
pub trait Staged {
    /// The stages, first to last; the last stage yields the logits `(batch, classes)`.
    fn stages(&self) -> Vec<Stage>;
}
