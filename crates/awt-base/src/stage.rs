//! The layer view of a feed-forward network: an ordered list of stages holding the live parameter
//! tensors, each with its forward map and the vector–Jacobian product with respect to its input.
//! The NTK crate builds its structured kernel from this view and the networks crate its explicit
//! input gradient; the networks crate produces the view. Neither knows the other.

use candle_core::{D, Result, Tensor};

use crate::avg_signal::AvgRoute;
use crate::conv::{conv_signal, conv2d};
use crate::product::matmul;
use crate::signal::{self, PoolRoute, ReluRoute};
use crate::{device, fused};

/// The parameters of a weighted stage. Tensors are the live parameters (cloning a candle tensor is
/// cheap and keeps the autograd identity), so a computation built from them back-propagates into the
/// network's variables.
#[derive(Clone, Debug)]
pub struct Weighted {
    /// Parameter name prefix, e.g. `fc1` (tensors `fc1.weight`, `fc1.bias`).
    pub name: String,
    /// Linear `(out, in)` or convolution `(out, in, kh, kw)`, unmasked.
    pub weight: Tensor,
    /// `(out,)`.
    pub bias: Tensor,
    /// 0/1 of the weight's shape, or `None` for dense.
    pub mask: Option<Tensor>,
}

impl Weighted {
    /// The effective weight `W ⊙ M` (or `W` when dense).
    pub fn effective_weight(&self) -> Result<Tensor> {
        match &self.mask {
            Some(m) => self.weight.mul(m),
            None => Ok(self.weight.clone()),
        }
    }

    /// The mask when no gradient flows into it — what the fused ops may run over its kept weights,
    /// computing `W ⊙ M`'s gradient at those weights only. A mask that carries a gradient (HYDRA's
    /// straight-through `m + s − stopgrad(s)`) needs that gradient at every weight, kept or not, so
    /// it gets `None` (the dense products).
    pub fn constant_mask(&self) -> Option<Tensor> {
        self.mask.as_ref().filter(|m| !m.track_op()).cloned()
    }
}

/// One stage of a feed-forward network.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `y = x (W ⊙ M)ᵀ + b`.
    Linear(Weighted),
    /// 2-D convolution with stride 1 and no padding, plus bias.
    Conv2d(Weighted),
    /// Elementwise max(x, 0).
    Relu,
    /// 2×2 max-pool, stride 2, floor mode; the gradient goes to the first maximum of each window
    /// (PyTorch's and JAX's convention).
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
    /// The parameters of a linear or convolution stage.
    pub fn weighted(&self) -> Option<&Weighted> {
        match self {
            Stage::Linear(w) | Stage::Conv2d(w) => Some(w),
            _ => None,
        }
    }

    /// True for stages with weights (linear and convolution).
    pub fn has_weight(&self) -> bool {
        self.weighted().is_some()
    }

    /// This stage with its parameters replaced by `f(parameters)`; stages without parameters come
    /// back unchanged.
    pub fn map_params(self, f: impl FnOnce(Weighted) -> Result<Weighted>) -> Result<Stage> {
        Ok(match self {
            Stage::Linear(w) => Stage::Linear(f(w)?),
            Stage::Conv2d(w) => Stage::Conv2d(f(w)?),
            other => other,
        })
    }

    /// Applies this stage to `h`.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        match self {
            Stage::Linear(p) if device::cpu_kernels(h) => h.contiguous()?.apply_op3(
                &p.effective_weight()?.contiguous()?,
                &p.bias.contiguous()?,
                // Linear layers keep the dense products here even under a constant mask: at the
                // search's and training's batch sizes the kept-weight form ran no faster (one PGD-10
                // AT epoch of LeNet-300-100 at 0.05 the same) and the MLP search 8 % slower (six
                // alternated criterion runs, 97.7 against 105.2 ms per 2 steps: its fork-join over
                // both threads for products of a few thousand multiply-adds). `fused::Dense` keeps
                // the option for other callers; convolutions gain 2× and take it.
                fused::Dense { relu: false, mask: None },
            ),
            Stage::Conv2d(p) if device::cpu_kernels(h) => h.contiguous()?.apply_op3(
                &p.effective_weight()?.contiguous()?,
                &p.bias.contiguous()?,
                fused::Conv { relu: false, mask: p.constant_mask() },
            ),
            Stage::Linear(p) => matmul(h, &p.effective_weight()?.t()?)?.broadcast_add(&p.bias),
            Stage::Conv2d(p) => conv2d(h, &p.effective_weight()?)?.broadcast_add(&p.bias.reshape((1, (), 1, 1))?),
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
                h.broadcast_sub(&shift)?.broadcast_mul(&channel_vector(&recip(std), h)?)
            }
        }
    }

    /// The vector–Jacobian product with respect to this stage's input: given the stage's `input`
    /// (`n` examples) and signals `d` shaped like its output but with `r·n` rows — `r` signals per
    /// example, example-major (row `i·r + s`) — returns the signals at the input, `r·n` rows. `r = 1`
    /// is an ordinary backward pass (an attack's input gradient); the NTK pushes one signal per class.
    ///
    /// Built from differentiable tensor ops in the weights (ReLU and max-pool selections are detached
    /// 0/1 masks), so a computation on the result back-propagates into the weights.
    pub fn backward(&self, input: &Tensor, d: &Tensor) -> Result<Tensor> {
        let n = input.dim(0)?;
        let r = d.dim(0)? / n.max(1);
        match self {
            Stage::Linear(p) => matmul(d, &p.effective_weight()?),
            // On the CPU the signal maps are single ops (`signal`); elsewhere candle ops.
            Stage::Conv2d(p) if device::cpu_kernels(d) => signal::conv_signal(d, p),
            Stage::Relu if device::cpu_kernels(d) => {
                d.contiguous()?.apply_op2(&input.detach().contiguous()?, ReluRoute)
            }
            Stage::MaxPool2 if device::cpu_kernels(d) => {
                d.contiguous()?.apply_op2(&input.detach().contiguous()?, PoolRoute { after_relu: false })
            }
            Stage::AvgPool2 if device::cpu_kernels(d) => {
                d.contiguous()?.apply_op2(&input.detach().contiguous()?, AvgRoute { after_relu: false })
            }
            Stage::Conv2d(p) => conv_signal(d, &p.effective_weight()?),
            Stage::Relu => d.mul(&repeat_rows(&input.detach().gt(0.0)?.to_dtype(d.dtype())?, r)?),
            Stage::Flatten => {
                let mut shape = vec![n * r];
                shape.extend_from_slice(&input.dims()[1..]);
                d.reshape(shape.as_slice())
            }
            Stage::Standardize { std, .. } => match std.as_slice() {
                [s] => d.affine(1.0 / s, 0.0),
                _ => d.broadcast_mul(&channel_vector(&recip(std), d)?),
            },
            Stage::AvgPool2 => {
                let (_, c, h, w) = input.dims4()?;
                let (h2, w2) = (h / 2, w / 2);
                let g =
                    d.reshape((n * r, c, h2, 1, w2, 1))?.broadcast_as((n * r, c, h2, 2, w2, 2))?.affine(0.25, 0.0)?;
                pad_to(&g.reshape((n * r, c, h2 * 2, w2 * 2))?, h, w)
            }
            Stage::MaxPool2 => {
                let (_, c, h, w) = input.dims4()?;
                let (h2, w2) = (h / 2, w / 2);
                // One-hot of each window's first maximum, (n, c, h2, w2, 4), repeated per signal.
                let hit = repeat_rows(&first_max_one_hot(&input.detach())?.to_dtype(d.dtype())?, r)?;
                let g = hit.broadcast_mul(&d.unsqueeze(4)?)?; // (n·r, c, h2, w2, 4)
                let g = g.reshape((n * r, c, h2, w2, 2, 2))?.permute((0, 1, 2, 4, 3, 5))?;
                pad_to(&g.reshape((n * r, c, h2 * 2, w2 * 2))?, h, w)
            }
        }
    }
}

/// Element-wise reciprocals.
fn recip(v: &[f64]) -> Vec<f64> {
    v.iter().map(|s| 1.0 / s).collect()
}

/// `m: (n, …)` → `(n·r, …)` with row `i·r + s` equal to `m[i]`.
fn repeat_rows(m: &Tensor, r: usize) -> Result<Tensor> {
    if r == 1 {
        return Ok(m.clone());
    }
    let dims = m.dims().to_vec();
    let mut b = vec![dims[0], r];
    b.extend_from_slice(&dims[1..]);
    let mut out = vec![dims[0] * r];
    out.extend_from_slice(&dims[1..]);
    m.unsqueeze(1)?.broadcast_as(b.as_slice())?.reshape(out.as_slice())
}

/// Zero-pads `(b, c, h', w')` at the bottom/right to `(b, c, h, w)` (pools drop odd edges).
fn pad_to(g: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, gh, gw) = g.dims4()?;
    let g = if gh < h { g.pad_with_zeros(2, 0, h - gh)? } else { g.clone() };
    if gw < w { g.pad_with_zeros(3, 0, w - gw) } else { Ok(g) }
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

/// The 2×2 windows of `x: (b, c, h, w)` (odd edges dropped) as `(b, c, h/2, w/2, 4)`, window entries
/// in row-major order (top-left, top-right, bottom-left, bottom-right).
fn pool_windows(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    x.narrow(2, 0, h2 * 2)?
        .narrow(3, 0, w2 * 2)?
        .reshape((b, c, h2, 2, w2, 2))?
        .permute((0, 1, 2, 4, 3, 5))?
        .reshape((b, c, h2, w2, 4))
}

/// One-hot `(b, c, h/2, w/2, 4)` of each 2×2 window's first maximum (row-major order).
fn first_max_one_hot(x: &Tensor) -> Result<Tensor> {
    let idx = pool_windows(x)?.argmax_keepdim(D::Minus1)?; // first index of the maximum
    let pos = Tensor::arange(0u32, 4, x.device())?.reshape((1, 1, 1, 1, 4))?;
    pos.broadcast_eq(&idx)
}

/// 2×2 max-pool, stride 2, floor mode: `(b, c, h, w) → (b, c, h/2, w/2)`.
///
/// Differentiable with PyTorch's and JAX's gradient: each window's gradient goes to its *first*
/// maximum (row-major), never to every tied element (a `max` reduction's backward does the latter,
/// which is up to 4× a subgradient; ties are common, e.g. equal activations on blank background).
/// On the CPU one custom op ([`fused::MaxPool`]); elsewhere built from candle ops (argmax, gather),
/// as `Tensor::max_pool2d`'s CPU backward is wrong (it scales the gradient by 1/4). The two are
/// tested equal, ties included; finite-difference tested in awt-nets.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    if device::cpu_kernels(x) {
        return x.contiguous()?.apply_op1(fused::MaxPool);
    }
    max_pool2_candle(x)
}

/// [`max_pool2`] from candle ops alone (any device).
pub(crate) fn max_pool2_candle(x: &Tensor) -> Result<Tensor> {
    let win = pool_windows(x)?;
    let idx = win.detach().argmax_keepdim(D::Minus1)?;
    win.contiguous()?.gather(&idx, D::Minus1)?.squeeze(D::Minus1)
}

/// 2×2 average pool, stride 2, floor mode, by reshape + mean (exact gradient, any size).
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.narrow(2, 0, h / 2 * 2)?.narrow(3, 0, w / 2 * 2)?;
    x.reshape((b, c, h / 2, 2, w / 2, 2))?.mean(5)?.mean(3)
}

/// A network that exposes its stages in forward order.
pub trait Staged {
    /// The stages, first to last; the last stage yields the logits `(batch, classes)`.
    fn stages(&self) -> Vec<Stage>;
}

/// Runs `x` through `stages` in order and returns the logits. On the CPU a linear or convolution
/// stage followed by a ReLU runs as one fused op (the same numbers, one pass fewer each way).
pub fn forward_stages(stages: &[Stage], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    let mut i = 0;
    while i < stages.len() {
        let fused_relu = device::cpu_kernels(&h) && matches!(stages.get(i + 1), Some(Stage::Relu));
        h = match &stages[i] {
            Stage::Linear(p) if fused_relu => {
                i += 1;
                h.contiguous()?.apply_op3(
                    &p.effective_weight()?.contiguous()?,
                    &p.bias.contiguous()?,
                    fused::Dense { relu: true, mask: None }, // dense products: see `Stage::forward`
                )?
            }
            Stage::Conv2d(p) if fused_relu => {
                i += 1;
                h.contiguous()?.apply_op3(
                    &p.effective_weight()?.contiguous()?,
                    &p.bias.contiguous()?,
                    fused::Conv { relu: true, mask: p.constant_mask() },
                )?
            }
            s => s.forward(&h)?,
        };
        i += 1;
    }
    Ok(h)
}

/// Runs `x` through `stages`, keeping each stage's input (for [`backward_stages`]); returns the
/// logits and the inputs.
pub fn forward_keep(stages: &[Stage], x: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
    let mut inputs = Vec::with_capacity(stages.len());
    let mut h = x.clone();
    for s in stages {
        inputs.push(h.clone());
        h = s.forward(&h)?;
    }
    Ok((h, inputs))
}

/// `vᵀ ∂out/∂x` through every stage, given the stage inputs of [`forward_keep`] and `v` shaped like
/// the output (`r` signals per example as in [`Stage::backward`]).
pub fn backward_stages(stages: &[Stage], inputs: &[Tensor], v: &Tensor) -> Result<Tensor> {
    let mut d = v.clone();
    for (s, inp) in stages.iter().zip(inputs).rev() {
        d = s.backward(inp, &d)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, rand, same_gradients};
    use candle_core::Var;

    #[test]
    fn the_fused_max_pool_equals_the_gather_formulation_with_gradients_and_ties() {
        // Random values (odd sizes: the last row and column are dropped) and a blank image (ties).
        let mut v = rand(&[2, 3, 7, 6], 9).flatten_all().unwrap().to_vec1::<f64>().unwrap();
        v[3 * 7 * 6..].iter_mut().for_each(|p| *p = 0.5);
        let x = Var::from_tensor(&Tensor::from_vec(v, (2, 3, 7, 6), &candle_core::Device::Cpu).unwrap()).unwrap();
        let fast = x.as_tensor().apply_op1(fused::MaxPool).unwrap();
        let slow = max_pool2_candle(x.as_tensor()).unwrap();
        assert_eq!(max_diff(&fast, &slow), 0.0);
        let r = rand(fast.dims(), 10);
        // Both route each window's gradient to its first maximum: identical up to summation order.
        same_gradients(&fast, &slow, &r, &[&x], 1e-15);
    }

    #[test]
    fn a_mask_that_carries_a_gradient_gets_it_at_every_weight() {
        // HYDRA's straight-through mask `m + s − stopgrad(s)` at a kept fraction where a constant
        // mask would take the kept-weight products: the scores' gradient `∂L/∂(W ⊙ M) ⊙ W` must reach
        // the weights not kept too, as candle's own ops give it (the device-generic path).
        let mut r = crate::Rng::new(31);
        for conv in [true, false] {
            let (wshape, xshape): (&[usize], &[usize]) =
                if conv { (&[8, 3, 3, 3], &[2, 3, 9, 8]) } else { (&[12, 20], &[4, 20]) };
            let n: usize = wshape.iter().product();
            let m: Vec<f64> = (0..n).map(|_| f64::from(u8::from(r.uniform() < 0.05))).collect();
            let m = Tensor::from_vec(m, wshape, &candle_core::Device::Cpu).unwrap();
            let s = Var::from_tensor(&rand(wshape, 32)).unwrap();
            let st = (&m + (s.as_tensor() - s.as_tensor().detach()).unwrap()).unwrap();
            let p =
                Weighted { name: "l".into(), weight: rand(wshape, 33), bias: rand(&[wshape[0]], 34), mask: Some(st) };
            assert!(p.constant_mask().is_none());
            let stages = [if conv { Stage::Conv2d(p.clone()) } else { Stage::Linear(p.clone()) }, Stage::Relu];
            let x = rand(xshape, 35);
            let fast = forward_stages(&stages, &x).unwrap();
            let slow = device::generic_path(|| forward_stages(&stages, &x).unwrap());
            assert!(max_diff(&fast, &slow) < 1e-12);
            let g = same_gradients(&fast, &slow, &rand(fast.dims(), 36), &[&s], 1e-11);
            let unkept: f64 =
                (g[0].abs().unwrap() * (1.0 - &m).unwrap()).unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(unkept > 0.0, "the scores of weights not kept get a gradient");
            // A constant mask is the one the fused ops take.
            let constant = Weighted { mask: Some(m.clone()), ..p };
            assert!(constant.constant_mask().is_some());
        }
    }
}
