//! The structured NTK: an explicit, first-order tensor program over a network's stages.
//!
//! For the examples of one batch we form the stage inputs `a_l` (ordinary forward pass) and the
//! backward signals `D_l[(i, c)] = ∂f_c(x_i)/∂(output of stage l)`, starting from the identity at the
//! logits and pushed back by each stage's [`Stage::backward`] with one signal per class (linear
//! `D W`, ReLU and max-pool by detached 0/1 masks, average pool by a ¼ spread, flatten by a reshape, convolution
//! by its adjoint, a differentiable col2im of `Wᵀ D`). The kernel is then Σ over weighted stages of
//! (Novak et al., ICML 2022, "structured derivatives"):
//!
//! - linear, dense: `(D₁ D₂ᵀ) ⊙ (a₁ a₂ᵀ ⊗ 1ₖₖ + 1)` (the `+ 1` is the bias);
//! - linear, masked `M`: `Θ[(i,c),(j,c')] = Σ_p D₁[i,c,p] D₂[j,c',p] (G[i,j,p] + 1)`,
//!   `G[i,j,p] = Σ_q M_pq a₁[i,q] a₂[j,q]` (only kept weights contribute);
//! - convolution: per-example weight gradients `g[(i,c)] = D[i,c] · patches(a_i)ᵀ` (patches by
//!   a differentiable im2col custom op), contracted pairwise: `g₁ g₂ᵀ`, plus the bias term
//!   `(Σ_pos D₁)(Σ_pos D₂)ᵀ`. Under a sparse mask `g` is formed at the kept weights only
//!   ([`KeptConvGrad`], work ∝ density), so the contraction runs over the kept weights; a dense
//!   mask multiplies `g₁` by `M`. (The patch-Gram alternative is not implemented: for the zoo's
//!   layers the per-example form is as cheap or cheaper, and it is the only one that admits a mask.)
//!
//! For a batch with itself (`x1` and `x2` one tensor) every product of one side with the other is a
//! Gram matrix `A·Aᵀ`, and [`gram`] multiplies it from the diagonal on in one band of rows per
//! thread and copies the rest transposed (the plain product's bits), where the inner dimension
//! makes that pay (64 or more), else one plain product;
//! [`structured_blocked`] likewise computes the blocks above the diagonal and transposes them.
//!
//! Every op is differentiable and the masks are constants, so `backward()` on any scalar of the
//! result gives its exact gradient with respect to the weights (almost everywhere: ReLU and max-pool
//! selections are piecewise constant).

use awt_base::avg_signal::AvgRoute;
use awt_base::device;
use awt_base::product::matmul;
use awt_base::signal::{PoolRoute, density, mask_values};
use awt_base::{Stage, Weighted};
use candle_core::{D, Tensor};

use crate::Kind;
use crate::error::NtkError;
use awt_base::conv::im2col;

use crate::ops::{
    PooledKeptConvGrad, add_block_diag, block_diag, gram, kept_conv_grad, masked_gram, masked_pair, per_example_grad,
    scale_blocks_add,
};

/// Up to this mask density (`awt_base::signal::SPARSE_DENSITY`) a masked linear layer's input Gram
/// is gathered per output unit ([`MaskedGram`], work ∝ density) and a masked convolution's
/// per-example gradients are formed at the kept weights only ([`KeptConvGrad`]); above it the dense
/// products are cheaper.
const SPARSE_GRAM_DENSITY: f64 = awt_base::signal::SPARSE_DENSITY;

/// What one weighted stage contributes for one batch.
pub(crate) enum LayerSide {
    /// `identity`: the signals are the identity (an output layer with nothing after it).
    Linear { a: Tensor, d: Tensor, mask: Option<Tensor>, identity: bool },
    /// `g`: per-example weight gradients (rows `(i, c)`), with the bias gradients as their last
    /// columns when `db` is `None`.
    Conv { g: Tensor, db: Option<Tensor>, mask: Option<Tensor> },
}

/// Stage inputs and backward signals of every weighted stage for the batch `x`, last stage first.
/// The forward pass runs `fwd`, the backward pass `bwd`: `stages` themselves, or their copies from
/// [`masked_linear_products`]; `stages` say which masks the kernel's formulas take.
pub(crate) fn side(
    stages: &[Stage],
    fwd: &[Stage],
    bwd: &[Stage],
    x: &Tensor,
) -> Result<(Vec<LayerSide>, usize, usize), NtkError> {
    let (h, inputs) = awt_base::forward_keep(fwd, x)?;
    let (n, k) = h.dims2().map_err(|_| {
        NtkError::Invalid(format!("the network's output has shape {:?}, expected (batch, classes)", h.dims()))
    })?;
    let first_weighted = stages
        .iter()
        .position(Stage::has_weight)
        .ok_or_else(|| NtkError::Invalid("the network has no weights".into()))?;
    // One signal per class: D = ∂f_c(x_i)/∂(stage output), rows i·k + c, starting from the identity.
    let mut d = Tensor::eye(k, h.dtype(), x.device())?.unsqueeze(0)?.broadcast_as((n, k, k))?.reshape((n * k, k))?;
    let mut out = Vec::new();
    let mut relu_done = false;
    // A convolution whose side was formed from the pooled signals after it.
    let mut side_done: Option<usize> = None;
    for (idx, (s, inp)) in stages.iter().zip(&inputs).enumerate().rev() {
        if std::mem::take(&mut relu_done) {
            continue; // this ReLU's backward ran with the max-pool after it
        }
        match s {
            Stage::Conv2d(_) if side_done == Some(idx) => {}
            Stage::Linear(p) => {
                let identity = idx + 1 == stages.len();
                out.push(LayerSide::Linear { a: inp.clone(), d: d.clone(), mask: effective_mask(&p.mask)?, identity });
            }
            Stage::Conv2d(p) => {
                let (o, c, kh, kw) = p.weight.dims4()?;
                let (_, _, oh, ow) = d.dims4()?;
                let l = oh * ow;
                let q = c * kh * kw;
                let patches = im2col(inp, kh, kw)?; // (n, q, L)
                let mask = effective_mask(&p.mask)?.map(|m| m.reshape((o, q))).transpose()?;
                match mask {
                    // Sparse: the per-example gradients at the kept weights only (work ∝ density),
                    // with the bias gradients in the same rows.
                    Some(m) if density(&m)? <= SPARSE_GRAM_DENSITY => {
                        let g = kept_conv_grad(&d, &patches, &m)?;
                        out.push(LayerSide::Conv { g, db: None, mask: None });
                    }
                    mask => {
                        let g = per_example_grad(&d.reshape((n, k * o, l))?, &patches)?.reshape((n * k, o * q))?;
                        let db = d.reshape((n * k, o, l))?.sum(2)?;
                        let mask = mask.map(|m| m.reshape((1, o * q))).transpose()?;
                        out.push(LayerSide::Conv { g, db: Some(db), mask });
                    }
                }
            }
            _ => {}
        }
        if idx == first_weighted {
            break;
        }
        // A convolution under a ReLU and a max-pool: its (kept-)weight gradients straight from the
        // pooled signals (CPU), without routing them to full size; the first layer then ends here.
        if let Some(side) = pooled_conv(stages, &inputs, idx, first_weighted, &d)? {
            out.push(side);
            if idx - 2 == first_weighted {
                break;
            }
            side_done = Some(idx - 2);
        }
        // A max- or average pool over a ReLU's output: both signal maps in one pass (CPU).
        if matches!(s, Stage::MaxPool2 | Stage::AvgPool2)
            && idx > 0
            && matches!(stages[idx - 1], Stage::Relu)
            && device::cpu_kernels(&d)
        {
            let (d_, x) = (d.contiguous()?, inp.detach().contiguous()?);
            d = match s {
                Stage::MaxPool2 => d_.apply_op2(&x, PoolRoute { after_relu: true })?,
                _ => d_.apply_op2(&x, AvgRoute { after_relu: true })?,
            };
            relu_done = true;
            continue;
        }
        d = bwd[idx].backward(inp, &d)?;
    }
    Ok((out, n, k))
}

/// The side of the convolution before a ReLU and the max-pool at `idx`, whose output signals are `d`
/// ([`PooledKeptConvGrad`], CPU only), where it pays: for the first weighted stage under any mask
/// (a dense one as all ones), whose routed signals are not needed further, and for a later dense
/// one (the per-window form over transposed patches is a quarter of the routed per-example
/// product; its routed signals still go on to its backward pass). A later sparse one keeps the
/// routed form ([`KeptConvGrad`]: per kept weight, positions are no dearer than windows). `None`
/// otherwise.
fn pooled_conv(
    stages: &[Stage],
    inputs: &[Tensor],
    idx: usize,
    first_weighted: usize,
    d: &Tensor,
) -> Result<Option<LayerSide>, NtkError> {
    if !device::cpu_kernels(d) || idx < 2 || idx - 2 < first_weighted {
        return Ok(None);
    }
    let (Stage::MaxPool2, Stage::Relu, Stage::Conv2d(p)) = (&stages[idx], &stages[idx - 1], &stages[idx - 2]) else {
        return Ok(None);
    };
    let (o, c, kh, kw) = p.weight.dims4()?;
    let m = match effective_mask(&p.mask)? {
        Some(m) if idx - 2 == first_weighted => m.reshape((o, c * kh * kw))?,
        Some(_) => return Ok(None),
        None => Tensor::ones((o, c * kh * kw), d.dtype(), d.device())?,
    };
    let patches = im2col(&inputs[idx - 2], kh, kw)?.contiguous()?;
    let x = inputs[idx].detach().contiguous()?;
    let g = d.contiguous()?.apply_op3(&x, &patches, PooledKeptConvGrad::new(&m)?)?;
    Ok(Some(LayerSide::Conv { g, db: None, mask: None }))
}

/// `stages` with each masked linear layer's `W ⊙ M` formed now, as a dense layer's weight (what
/// its forward and backward passes read; a linear stage runs dense products under a mask anyway).
/// With `backward`, not for the first weighted stage, whose backward pass the signals never run.
fn masked_linear_products(stages: &[Stage], backward: bool) -> candle_core::Result<Vec<Stage>> {
    let first_weighted = stages.iter().position(Stage::has_weight);
    stages
        .iter()
        .enumerate()
        .map(|(idx, s)| match s {
            Stage::Linear(p) if p.mask.is_some() && !(backward && Some(idx) == first_weighted) => {
                Ok(Stage::Linear(Weighted { weight: p.effective_weight()?, mask: None, ..p.clone() }))
            }
            s => Ok(s.clone()),
        })
        .collect()
}

/// `None` for a missing or all-ones mask, so that an all-ones mask gives exactly the dense kernel
/// (the masked formula sums in another order).
fn effective_mask(mask: &Option<Tensor>) -> candle_core::Result<Option<Tensor>> {
    match mask {
        Some(m) if mask_values(m)?.iter().any(|v| *v < 1.0) => Ok(Some(m.detach())),
        _ => Ok(None),
    }
}

/// `G[i,j,p] + 1 = Σ_q M[p,q] a1[i,q] a2[j,q] + 1` (the `+ 1` is the bias), `(n1, n2, p)`: gathered per
/// output unit for sparse masks, one dense product otherwise.
fn masked_input_gram(a1: &Tensor, a2: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
    let (n1, n2) = (a1.dim(0)?, a2.dim(0)?);
    let (out, inp) = m.dims2()?;
    if density(m)? <= SPARSE_GRAM_DENSITY {
        return masked_gram(a1, a2, m, true);
    }
    let aa = a1.unsqueeze(1)?.broadcast_mul(&a2.unsqueeze(0)?)?.reshape((n1 * n2, inp))?;
    matmul(&aa, &m.t()?)?.reshape((n1, n2, out))? + 1.0
}

/// `x1·x2ᵀ`; with `same` (`x1` and `x2` are one tensor, X1 = X2) by [`gram`].
fn outer(x1: &Tensor, x2: &Tensor, same: bool) -> candle_core::Result<Tensor> {
    if same { gram(x1) } else { matmul(x1, &x2.t()?) }
}

/// One weighted stage's block of the full kernel, `(n1·k, n2·k)`, for the layers not accumulated
/// by the fused dense-linear path in [`structured`] (masked linear and convolution).
fn pair(l1: &LayerSide, l2: &LayerSide, n1: usize, n2: usize, k: usize, same: bool) -> candle_core::Result<Tensor> {
    match (l1, l2) {
        (LayerSide::Linear { a: a1, d: d1, mask: Some(m), .. }, LayerSide::Linear { a: a2, d: d2, .. }) => {
            let out = m.dim(0)?;
            let g = masked_input_gram(a1, a2, m)?;
            masked_pair(&d1.reshape((n1, k, out))?, &d2.reshape((n2, k, out))?, &g)
        }
        (LayerSide::Conv { g: g1, db: b1, mask }, LayerSide::Conv { g: g2, db: b2, .. }) => {
            // A mask multiplies one side only, so the product is not a Gram then.
            let w = match mask {
                Some(m) => matmul(&g1.broadcast_mul(m)?, &g2.t()?)?,
                None => outer(g1, g2, same)?,
            };
            match (b1, b2) {
                (Some(b1), Some(b2)) => w + outer(b1, b2, same)?,
                _ => Ok(w),
            }
        }
        _ => Err(candle_core::Error::Msg("mismatched layer sides".into())),
    }
}

/// One weighted stage's block of the traced kernel, `(n1, n2)`, without forming the full one:
/// Σ_c Θ[(i,c),(j,c)] contracts the class axis together with the feature axis.
fn pair_traced(
    l1: &LayerSide,
    l2: &LayerSide,
    n1: usize,
    n2: usize,
    k: usize,
    same: bool,
) -> candle_core::Result<Tensor> {
    match (l1, l2) {
        (LayerSide::Linear { a: a1, d: d1, mask: None, .. }, LayerSide::Linear { a: a2, d: d2, .. }) => {
            let out = d1.dim(1)?;
            let tdd = outer(&d1.reshape((n1, k * out))?, &d2.reshape((n2, k * out))?, same)?;
            let aa = (outer(a1, a2, same)? + 1.0)?;
            tdd.mul(&aa)
        }
        (LayerSide::Linear { a: a1, d: d1, mask: Some(m), .. }, LayerSide::Linear { a: a2, d: d2, .. }) => {
            let out = m.dim(0)?;
            let g = masked_input_gram(a1, a2, m)?.permute((2, 0, 1))?; // (out, n1, n2)
            // E[p, i, j] = Σ_c D1[i,c,p] D2[j,c,p]
            let e1 = d1.reshape((n1, k, out))?.permute((2, 0, 1))?.contiguous()?;
            let e2 = d2.reshape((n2, k, out))?.permute((2, 1, 0))?.contiguous()?;
            matmul(&e1, &e2)?.mul(&g)?.sum(0)
        }
        (LayerSide::Conv { g: g1, db: b1, mask }, LayerSide::Conv { g: g2, db: b2, .. }) => {
            let p = g1.dim(1)?;
            let g2 = g2.reshape((n2, k * p))?;
            let w = match mask {
                Some(m) => matmul(&g1.broadcast_mul(m)?.reshape((n1, k * p))?, &g2.t()?)?,
                None => outer(&g1.reshape((n1, k * p))?, &g2, same)?,
            };
            match (b1, b2) {
                (Some(b1), Some(b2)) => {
                    let o = b1.dim(1)?;
                    w + outer(&b1.reshape((n1, k * o))?, &b2.reshape((n2, k * o))?, same)?
                }
                _ => Ok(w),
            }
        }
        _ => Err(candle_core::Error::Msg("mismatched layer sides".into())),
    }
}

/// Sums the diagonal class blocks: `(n1·k, n2·k) → (n1, n2)`.
pub fn trace_full(full: &Tensor, n1: usize, n2: usize) -> Result<Tensor, NtkError> {
    let (r, _) = full.dims2()?;
    let k = r / n1.max(1);
    let eye = Tensor::eye(k, full.dtype(), full.device())?.reshape((1, k, 1, k))?;
    Ok(full.reshape((n1, k, n2, k))?.broadcast_mul(&eye)?.sum(D::Minus1)?.sum(1)?)
}

/// The structured kernel Θ(X1, X2), differentiable with respect to the stages' weights.
/// `x1` and `x2` are batches (batch first) in the network's input shape.
pub fn structured(stages: &[Stage], x1: &Tensor, x2: &Tensor, kind: Kind) -> Result<Tensor, NtkError> {
    // On the CPU the two batches' sides at once, one per thread where there are two: their products
    // are too small to gain from both threads each (their bits do not depend on the threads). Not
    // on the device-generic path, whose switch is per thread.
    let together = x1.id() != x2.id() && awt_base::threads() > 1 && device::cpu_kernels(x1);
    structured_with(stages, x1, x2, kind, together)
}

/// [`structured`], the two batches' sides computed at once (`together`) or one after the other.
fn structured_with(stages: &[Stage], x1: &Tensor, x2: &Tensor, kind: Kind, together: bool) -> Result<Tensor, NtkError> {
    let same = x1.id() == x2.id();
    let (r1, r2) = if together && !same {
        // The masked linear layers' W ⊙ M of each pass formed first, one product per use as the
        // passes would form them (the same graph, so the same gradients bit for bit): formed
        // inside the two sides at once they contend for candle's element-wise pool.
        let [f1, b1, f2, b2] = [false, true, false, true].map(|backward| masked_linear_products(stages, backward));
        let (f1, b1, f2, b2) = (f1?, b1?, f2?, b2?);
        let (r1, r2) = rayon::join(|| side(stages, &f1, &b1, x1), || side(stages, &f2, &b2, x2));
        (r1?, Some(r2?))
    } else {
        let r1 = side(stages, stages, stages, x1)?;
        (r1, if same { None } else { Some(side(stages, stages, stages, x2)?) })
    };
    let (s1, n1, k) = r1;
    let (s2, n2) = match &r2 {
        Some((s, n, _)) => (s, *n),
        None => (&s1, n1),
    };
    let mut total: Option<Tensor> = None;
    for (l1, l2) in s1.iter().zip(s2.iter()) {
        // Dense linear layers of the full kernel are accumulated in place by fused ops.
        if kind == Kind::Full
            && let (LayerSide::Linear { a: a1, d: d1, mask: None, identity }, LayerSide::Linear { a: a2, d: d2, .. }) =
                (l1, l2)
        {
            let s = (outer(a1, a2, same)? + 1.0)?;
            total = Some(match (total.take(), *identity) {
                (None, true) => block_diag(&s, k)?,
                (Some(acc), true) => add_block_diag(&acc, &s, k)?,
                (acc, false) => {
                    let acc = match acc {
                        Some(t) => t,
                        None => Tensor::zeros((n1 * k, n2 * k), a1.dtype(), a1.device())?,
                    };
                    scale_blocks_add(&acc, &outer(d1, d2, same)?, &s, k)?
                }
            });
            continue;
        }
        let t = match kind {
            Kind::Full => pair(l1, l2, n1, n2, k, same)?,
            Kind::Trace => pair_traced(l1, l2, n1, n2, k, same)?,
        };
        total = Some(match total {
            None => t,
            Some(acc) => (acc + t)?,
        });
    }
    Ok(total.expect("at least one weighted stage"))
}

/// The kernel in blocks of at most `block` examples per side (bounded memory), detached.
pub fn structured_blocked(
    stages: &[Stage],
    x1: &Tensor,
    x2: &Tensor,
    kind: Kind,
    block: usize,
) -> Result<Tensor, NtkError> {
    let block = block.max(1);
    let (n1, n2) = (x1.dim(0)?, x2.dim(0)?);
    let same = x1.id() == x2.id();
    let mut blocks: Vec<Vec<Tensor>> = Vec::new();
    for (bi, i) in (0..n1).step_by(block).enumerate() {
        let b1 = x1.narrow(0, i, block.min(n1 - i))?;
        let mut cols = Vec::new();
        for (bj, j) in (0..n2).step_by(block).enumerate() {
            if same && bj < bi {
                // A batch with itself: the block below the diagonal is the transpose of one above it.
                cols.push(blocks[bj][bi].t()?.contiguous()?);
                continue;
            }
            let b2 = if same && i == j { b1.clone() } else { x2.narrow(0, j, block.min(n2 - j))? };
            cols.push(structured(stages, &b1, &b2, kind)?.detach());
        }
        blocks.push(cols);
    }
    let rows: Vec<Tensor> = blocks.iter().map(|cols| Tensor::cat(cols, 1)).collect::<candle_core::Result<_>>()?;
    Ok(Tensor::cat(&rows, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awt_base::Staged;
    use awt_nets::{Arch, Init, Net};
    use candle_core::{DType, Device, Module};

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    /// The sides computed at once give the kernel and, through a loss that also uses the weights
    /// outside the kernel (as the search's output term does), the weights' gradients bit for bit
    /// as one after the other: masked (as the search's students) and dense nets, full and traced.
    #[test]
    fn sides_together_give_the_same_bits_as_one_after_the_other() {
        let dev = Device::Cpu;
        for arch in ["lenet-300-100", "lenet5-caffe"] {
            let arch: Arch = arch.parse().unwrap();
            for keep in [1.0, 0.05] {
                let mut net = Net::init(&arch, Init::KaimingUniform, 3, DType::F32, &dev).unwrap();
                if keep < 1.0 {
                    let names: Vec<String> = net.weights().map(|(k, _)| k.clone()).collect();
                    for (i, k) in names.iter().enumerate() {
                        let w = net.weights().find(|(n, _)| *n == k).unwrap().1.as_tensor().clone();
                        let mut rng = awt_base::Rng::new(10 + i as u64);
                        let m: Vec<f32> = (0..w.elem_count()).map(|_| f32::from(rng.uniform() < keep)).collect();
                        net.set_mask(k, &Tensor::from_vec(m, w.shape(), &dev).unwrap()).unwrap();
                    }
                }
                let mut rng = awt_base::Rng::new(7);
                let x = Tensor::from_vec(rng.uniform_vec_f32(16 * 784, 0.0, 1.0), (16, 1, 28, 28), &dev).unwrap();
                let (x1, x2) = (x.narrow(0, 0, 8).unwrap(), x.narrow(0, 8, 8).unwrap());
                for kind in [Kind::Full, Kind::Trace] {
                    let run = |together: bool| {
                        let k = structured_with(&net.stages(), &x1, &x2, kind, together).unwrap();
                        let out = net.forward(&x).unwrap();
                        let loss =
                            (k.sqr().unwrap().mean_all().unwrap() + out.sqr().unwrap().mean_all().unwrap()).unwrap();
                        let g = loss.backward().unwrap();
                        let grads: Vec<Vec<u32>> = net
                            .weights()
                            .map(|(_, v)| bits(g.get(v.as_tensor()).expect("a weight gradient")))
                            .collect();
                        (bits(&k), grads)
                    };
                    assert!(run(true) == run(false), "{arch:?} keep {keep} {kind:?}: the bits differ");
                }
            }
        }
    }
}
