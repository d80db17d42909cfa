//! The layer view of a feed-forward network: an ordered list of stages holding the live parameter
//! tensors. The NTK crate builds its structured kernel from this view; the networks crate produces
//! it. Neither knows the other.

use candle_core::{Result, Tensor};

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
    /// Input standardisation `(x − mean_c) / std_c` per channel `c` (dimension 1), or with one value
    /// for every element. It holds no parameters: it lets attacks work in pixel units while the
    /// network sees standardised inputs (NTT's recipe standardises by the training set's statistics).
    Standardize {
        /// One value, or one per channel.
        mean: Vec<f64>,
        /// One value, or one per channel; every value > 0.
        std: Vec<f64>,
    },
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

impl Stage {
    /// This stage with its weight, bias and mask replaced by `f(name, weight, bias, mask)`; stages
    /// without parameters come back unchanged.
    pub fn map_params(
        self,
        f: impl FnOnce(&str, Tensor, Tensor, Option<Tensor>) -> Result<(Tensor, Tensor, Option<Tensor>)>,
    ) -> Result<Stage> {
        Ok(match self {
            Stage::Linear { name, weight, bias, mask } => {
                let (weight, bias, mask) = f(&name, weight, bias, mask)?;
                Stage::Linear { name, weight, bias, mask }
            }
            Stage::Conv2d { name, weight, bias, mask } => {
                let (weight, bias, mask) = f(&name, weight, bias, mask)?;
                Stage::Conv2d { name, weight, bias, mask }
            }
            other => other,
        })
    }
}

/// A network that exposes its stages in forward order.
pub trait Staged {
    /// The stages, first to last; the last stage yields the logits `(batch, classes)`.
    fn stages(&self) -> Vec<Stage>;
}

/// 2×2 max-pool, stride 2, floor mode: `(b, c, h, w) → (b, c, h/2, w/2)`.
///
/// Built from `reshape` + `max` rather than `Tensor::max_pool2d`, whose CPU backward scales the
/// gradient by 1/4 (see `shared/research/candle-probe.md` §8). Finite-difference tested in awt-nets.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.narrow(2, 0, h / 2 * 2)?.narrow(3, 0, w / 2 * 2)?;
    x.reshape((b, c, h / 2, 2, w / 2, 2))?.max(5)?.max(3)
}

/// 2×2 average pool, stride 2, floor mode, by reshape + mean (exact gradient, any size).
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.narrow(2, 0, h / 2 * 2)?.narrow(3, 0, w / 2 * 2)?;
    x.reshape((b, c, h / 2, 2, w / 2, 2))?.mean(5)?.mean(3)
}

impl Stage {
    /// Applies this stage to `h`.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        match self {
            Stage::Linear { bias, .. } => {
                let w = self.effective_weight()?.expect("linear has a weight");
                h.matmul(&w.t()?)?.broadcast_add(bias)
            }
            Stage::Conv2d { bias, .. } => {
                let w = self.effective_weight()?.expect("conv has a weight");
                conv2d(h, &w)?.broadcast_add(&bias.reshape((1, (), 1, 1))?)
            }
            Stage::Relu => h.relu(),
            Stage::MaxPool2 => max_pool2(h),
            Stage::AvgPool2 => avg_pool2(h),
            Stage::Flatten => {
                let b = h.dim(0)?;
                h.reshape((b, ()))
            }
            Stage::Standardize { mean, std } => {
                if let ([m], [s]) = (mean.as_slice(), std.as_slice()) {
                    return h.affine(1.0 / s, -m / s);
                }
                let shift = channel_vector(mean, h)?;
                let scale = channel_vector(&std.iter().map(|s| 1.0 / s).collect::<Vec<_>>(), h)?;
                h.broadcast_sub(&shift)?.broadcast_mul(&scale)
            }
        }
    }

    /// For [`Stage::Standardize`], `d / std` (the vector–Jacobian product of the standardisation,
    /// `d` shaped like its input, or with a leading signal axis folded into the batch); `d` otherwise.
    pub fn standardize_backward(&self, d: &Tensor) -> Result<Tensor> {
        match self {
            Stage::Standardize { std, .. } => match std.as_slice() {
                [s] => d.affine(1.0 / s, 0.0),
                _ => d.broadcast_mul(&channel_vector(&std.iter().map(|s| 1.0 / s).collect::<Vec<_>>(), d)?),
            },
            _ => Ok(d.clone()),
        }
    }

    /// True for stages with weights (linear and convolution).
    pub fn has_weight(&self) -> bool {
        matches!(self, Stage::Linear { .. } | Stage::Conv2d { .. })
    }
}

/// `v` as a `(1, C, 1, …)` tensor of `like`'s dtype, broadcastable over `like`'s channel axis.
fn channel_vector(v: &[f64], like: &Tensor) -> Result<Tensor> {
    let rank = like.rank();
    if rank < 2 || like.dim(1)? != v.len() {
        return Err(candle_core::Error::Msg(format!(
            "standardisation has {} channel values, the input has shape {:?}",
            v.len(),
            like.dims()
        )));
    }
    let mut shape = vec![1; rank];
    shape[1] = v.len();
    Tensor::from_vec(v.to_vec(), shape.as_slice(), like.device())?.to_dtype(like.dtype())
}

/// Runs `x` through `stages` in order and returns the logits.
pub fn forward_stages(stages: &[Stage], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for s in stages {
        h = s.forward(&h)?;
    }
    Ok(h)
}

/// Stride-1, unpadded convolution as im2col + one matmul (differentiable through the custom op's
/// backward): `x: (n, c, h, w)`, `w: (o, c, kh, kw)` → `(n, o, h−kh+1, w−kw+1)`. candle's CPU
/// `conv2d` gives the same numbers more slowly (compared in the tests).
pub(crate) fn conv2d(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, _, h, wd) = x.dims4()?;
    let (o, c, kh, kw) = w.dims4()?;
    let (oh, ow) = (h - kh + 1, wd - kw + 1);
    let cols = crate::patches::im2col(x, kh, kw)?; // (n, c·kh·kw, oh·ow)
    // (o, c·kh·kw) @ (c·kh·kw, n·oh·ow) → (o, n, oh·ow) → (n, o, oh, ow)
    let cols = cols.transpose(0, 1)?.reshape((c * kh * kw, n * oh * ow))?;
    w.reshape((o, c * kh * kw))?.matmul(&cols)?.reshape((o, n, oh, ow))?.transpose(0, 1)?.contiguous()
}
