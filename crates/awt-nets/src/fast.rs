//! The explicit input gradient on raw CPU buffers: the forward pass and the vector–Jacobian product
//! of a stage list as loops and direct gemm calls over slices, with no autograd graph, no weight
//! gradients and one buffer per stage. This is what every PGD, APGD and FAB step and every
//! adversarial-training batch spends its time in; candle's per-op dispatch and allocation dominated
//! it for the zoo's small matrices. It computes exactly what [`awt_base::Stage::backward`] does (max-pool
//! gradient to each window's first maximum), checked against it in the tests; tensors stay at the
//! boundary.

use awt_base::conv::{col2im_add as col2im, im2col_into as im2col};
use awt_base::kernels::{View, gemm_into, with_slice};
use awt_base::{Stage, Weighted};
use candle_core::{DType, Tensor, Var, WithDType};
use rayon::prelude::*;

mod sparse;
use sparse::SparseLinear;

/// Elements per parallel task of the elementwise loops (ReLU forward and backward).
const CHUNK: usize = 1 << 16;

/// Images per parallel task: the batch split evenly over candle's threads.
fn per_task(n: usize) -> usize {
    n.div_ceil(awt_base::threads().max(1)).max(1)
}

/// What the backward pass needs of one stage's forward.
enum Kept<T> {
    /// Nothing (linear, convolution, flatten, standardisation, average pool: their backward needs
    /// only the weights and shapes).
    Nothing,
    /// ReLU: its output (positive where the input was).
    Relu(Vec<T>),
    /// Max-pool: the window position (0..4, row-major) of each output's first maximum.
    Pool(Vec<u8>),
    /// A convolution, ReLU and max-pool run as one ([`conv_relu_pool`]): per pooled output the
    /// window position of the first maximum of the convolution's output, or [`STOPPED`] where that
    /// maximum is not positive (the ReLU passes no gradient). Kept by the max-pool's step; the
    /// convolution's and the ReLU's steps keep [`Kept::InPool`].
    ReluPool(Vec<u8>),
    /// Part of a [`Kept::ReluPool`] group, whose backward runs at the max-pool's step.
    InPool,
}

/// [`Kept::ReluPool`]'s mark for a window whose maximum is not positive.
const STOPPED: u8 = 4;

/// Whether stages `i..i+3` are a convolution, a ReLU and a 2×2 max-pool (run as one).
fn conv_relu_pool(stages: &[Stage], i: usize) -> bool {
    matches!(stages.get(i..i + 3), Some([Stage::Conv2d(_), Stage::Relu, Stage::MaxPool2]))
}

/// A stage's input shape (without the batch), its effective weight if it has one, and what the
/// backward keeps.
struct Step<T> {
    shape: Vec<usize>,
    weight: Option<Tensor>,
    /// A masked linear layer's kept weights, when few enough are kept (then `weight` is `None`).
    sparse: Option<SparseLinear<T>>,
    kept: Kept<T>,
}

/// The contiguous elements of a CPU tensor of dtype `T`, copied.
fn slice<T: WithDType>(t: &Tensor) -> candle_core::Result<Vec<T>> {
    t.flatten_all()?.to_vec1::<T>()
}

/// The effective weight `W ⊙ M` (the weight itself when dense: no copy).
fn effective(p: &Weighted) -> candle_core::Result<Tensor> {
    match &p.mask {
        Some(m) => p.weight.detach().mul(&m.detach()),
        None => Ok(p.weight.detach()),
    }
}

/// A masked linear layer's kept weights, where at most [`sparse::SPARSE_MAX`] of them are kept.
fn sparse_of<T: WithDType>(s: &Stage) -> candle_core::Result<Option<SparseLinear<T>>> {
    let Stage::Linear(p) = s else { return Ok(None) };
    let Some(m) = &p.mask else { return Ok(None) };
    let (out_f, in_f) = p.weight.dims2()?;
    with_slice(&p.weight.detach(), |w: &[T]| with_slice(m, |m: &[T]| SparseLinear::new(w, m, out_f, in_f)))?
}

/// What the forward pass returns: the logits, their per-example shape, and what backward needs.
type Forward<T> = (Vec<T>, Vec<usize>, Vec<Step<T>>);

/// The forward pass over `x` (batch `n`, per-example `shape`).
fn forward<T: WithDType>(
    stages: &[Stage],
    x: Vec<T>,
    n: usize,
    mut shape: Vec<usize>,
) -> candle_core::Result<Forward<T>> {
    let mut h = x;
    let mut steps = Vec::with_capacity(stages.len());
    let mut fused_left = 0;
    for (i, s) in stages.iter().enumerate() {
        if fused_left > 0 {
            fused_left -= 1;
            continue;
        }
        let input_shape = shape.clone();
        let mut kept = Kept::Nothing;
        let sparse = sparse_of::<T>(s)?;
        let weight = if sparse.is_some() { None } else { s.weighted().map(effective).transpose()? };
        if let (true, Stage::Conv2d(p)) = (conv_relu_pool(stages, i), s) {
            let (o, c, kh, kw) = p.weight.dims4()?;
            let (hh, ww) = (shape[1], shape[2]);
            let (oh, ow) = (hh - kh + 1, ww - kw + 1);
            let b = slice::<T>(&p.bias)?;
            let w = weight.as_ref().expect("weighted");
            let (pooled, arg) = with_slice(w, |w: &[T]| conv_relu_pool_fwd(&h, w, &b, n, (c, hh, ww), (o, kh, kw)))?;
            h = pooled;
            steps.push(Step { shape: input_shape, weight, sparse: None, kept: Kept::InPool });
            steps.push(Step { shape: vec![o, oh, ow], weight: None, sparse: None, kept: Kept::InPool });
            steps.push(Step { shape: vec![o, oh, ow], weight: None, sparse: None, kept: Kept::ReluPool(arg) });
            shape = vec![o, oh / 2, ow / 2];
            fused_left = 2;
            continue;
        }
        h = match s {
            Stage::Standardize { mean, std } => {
                let c = if mean.len() == 1 { 1 } else { shape[0] };
                let plane = shape.iter().product::<usize>() / c;
                let mut out = h;
                for (e, v) in out.iter_mut().enumerate() {
                    let ch = if c == 1 { 0 } else { (e / plane) % c };
                    *v = T::from_f64((v.to_f64() - mean[ch]) / std[ch]);
                }
                out
            }
            Stage::Flatten => {
                shape = vec![shape.iter().product()];
                h
            }
            Stage::Relu => {
                let mut out = h;
                out.par_chunks_mut(CHUNK).for_each(|c| {
                    for v in c.iter_mut() {
                        if (*v).partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater) {
                            *v = T::zero();
                        }
                    }
                });
                kept = Kept::Relu(out.clone());
                out
            }
            Stage::Linear(p) if sparse.is_some() => {
                let b = slice::<T>(&p.bias)?;
                let sp = sparse.as_ref().expect("checked");
                shape = vec![p.weight.dims2()?.0];
                sp.forward(&h, &b, n)
            }
            Stage::Linear(p) => {
                let (out_f, in_f) = p.weight.dims2()?;
                let b = slice::<T>(&p.bias)?;
                // The bias in every row (gemm accumulates onto it); `extend_from_slice` copies by
                // rows (a `flat_map` collect pushed element by element: a fifth of a PGD step's time).
                let mut out: Vec<T> = Vec::with_capacity(n * out_f);
                for _ in 0..n {
                    out.extend_from_slice(&b);
                }
                with_slice(weight.as_ref().expect("weighted"), |w: &[T]| {
                    let wt = View::transposed(0, in_f);
                    gemm_into((n, out_f, in_f), &mut out, View::rows(0, out_f), &h, View::rows(0, in_f), w, wt, true)
                })?;
                shape = vec![out_f];
                out
            }
            Stage::Conv2d(p) => {
                let (o, c, kh, kw) = p.weight.dims4()?;
                let (hh, ww) = (shape[1], shape[2]);
                let (oh, ow) = (hh - kh + 1, ww - kw + 1);
                let (ckk, l) = (c * kh * kw, oh * ow);
                let b = slice::<T>(&p.bias)?;
                let mut out = vec![T::zero(); n * o * l];
                // Image by image (the patches of one image stay in cache), the batch split over threads.
                with_slice(weight.as_ref().expect("weighted"), |w: &[T]| {
                    let t = per_task(n);
                    out.par_chunks_mut(t * o * l).zip(h.par_chunks(t * c * hh * ww)).for_each(|(out, src)| {
                        let mut cols = vec![T::zero(); ckk * l];
                        for (img, dst) in src.chunks(c * hh * ww).zip(out.chunks_mut(o * l)) {
                            im2col(img, &mut cols, 1, c, hh, ww, kh, kw);
                            for (oc, bv) in b.iter().enumerate() {
                                dst[oc * l..(oc + 1) * l].fill(*bv);
                            }
                            gemm_into(
                                (o, l, ckk),
                                dst,
                                View::rows(0, l),
                                w,
                                View::rows(0, ckk),
                                &cols,
                                View::rows(0, l),
                                true,
                            );
                        }
                    });
                })?;
                shape = vec![o, oh, ow];
                out
            }
            Stage::MaxPool2 => {
                let (c, hh, ww) = (shape[0], shape[1], shape[2]);
                let (h2, w2) = (hh / 2, ww / 2);
                let mut out = vec![T::zero(); n * c * h2 * w2];
                let mut arg = vec![0u8; out.len()];
                // Plane by plane, the planes split over candle's threads.
                let planes = (h2 * w2).max(1);
                out.par_chunks_mut(planes).zip(arg.par_chunks_mut(planes)).zip(h.par_chunks(hh * ww)).for_each(
                    |((out, arg), src)| {
                        for r in 0..h2 {
                            for q in 0..w2 {
                                let at = |k: usize| src[(2 * r + k / 2) * ww + 2 * q + k % 2];
                                let (mut best, mut bi) = (at(0), 0u8);
                                for k in 1..4 {
                                    if at(k) > best {
                                        best = at(k);
                                        bi = k as u8;
                                    }
                                }
                                out[r * w2 + q] = best;
                                arg[r * w2 + q] = bi;
                            }
                        }
                    },
                );
                kept = Kept::Pool(arg);
                shape = vec![c, h2, w2];
                out
            }
            Stage::AvgPool2 => {
                let (c, hh, ww) = (shape[0], shape[1], shape[2]);
                let (h2, w2) = (hh / 2, ww / 2);
                let quarter = T::from_f64(0.25);
                let mut out = vec![T::zero(); n * c * h2 * w2];
                for plane in 0..n * c {
                    let src = &h[plane * hh * ww..];
                    for r in 0..h2 {
                        for q in 0..w2 {
                            let at = |k: usize| src[(2 * r + k / 2) * ww + 2 * q + k % 2];
                            out[(plane * h2 + r) * w2 + q] = (at(0) + at(1) + at(2) + at(3)) * quarter;
                        }
                    }
                }
                shape = vec![c, h2, w2];
                out
            }
        };
        steps.push(Step { shape: input_shape, weight, sparse, kept });
    }
    Ok((h, shape, steps))
}

/// A convolution, ReLU and 2×2 max-pool in one pass per image: the convolution's output (one gemm
/// into a per-thread buffer that stays in cache) is pooled at once, the ReLU applied to each
/// window's maximum (`max(relu(a)) = relu(max(a))`, and the first maximum is the same wherever it
/// is positive). Returns the pooled output `(n, o, oh/2, ow/2)` and per output its window position
/// or [`STOPPED`]. Saves writing, rectifying, copying and re-reading the full-size output.
fn conv_relu_pool_fwd<T: WithDType>(
    x: &[T],
    w: &[T],
    b: &[T],
    n: usize,
    (c, hh, ww): (usize, usize, usize),
    (o, kh, kw): (usize, usize, usize),
) -> (Vec<T>, Vec<u8>) {
    let (oh, ow) = (hh - kh + 1, ww - kw + 1);
    let (h2, w2) = (oh / 2, ow / 2);
    let (ckk, l, pl) = (c * kh * kw, oh * ow, h2 * w2);
    let mut out = vec![T::zero(); n * o * pl];
    let mut arg = vec![0u8; n * o * pl];
    let t = per_task(n);
    out.par_chunks_mut((t * o * pl).max(1))
        .zip(arg.par_chunks_mut((t * o * pl).max(1)))
        .zip(x.par_chunks(t * c * hh * ww))
        .for_each(|((out, arg), src)| {
            let (mut cols, mut y) = (vec![T::zero(); ckk * l], vec![T::zero(); o * l]);
            for ((img, dst), am) in
                src.chunks(c * hh * ww).zip(out.chunks_mut((o * pl).max(1))).zip(arg.chunks_mut((o * pl).max(1)))
            {
                im2col(img, &mut cols, 1, c, hh, ww, kh, kw);
                for (oc, bv) in b.iter().enumerate() {
                    y[oc * l..(oc + 1) * l].fill(*bv);
                }
                gemm_into((o, l, ckk), &mut y, View::rows(0, l), w, View::rows(0, ckk), &cols, View::rows(0, l), true);
                for oc in 0..o {
                    let plane = &y[oc * l..][..l];
                    for r in 0..h2 {
                        for q in 0..w2 {
                            let at = |k: usize| plane[(2 * r + k / 2) * ow + 2 * q + k % 2];
                            let (mut best, mut bi) = (at(0), 0u8);
                            for k in 1..4 {
                                if at(k) > best {
                                    best = at(k);
                                    bi = k as u8;
                                }
                            }
                            let e = oc * pl + r * w2 + q;
                            if best > T::zero() {
                                dst[e] = best;
                                am[e] = bi;
                            } else {
                                am[e] = STOPPED;
                            }
                        }
                    }
                }
            }
        });
    (out, arg)
}

/// The input gradient of [`conv_relu_pool_fwd`]: per image the pooled signal routed to each window's
/// maximum (where positive) in a per-thread buffer, then the convolution's input gradient from it.
fn conv_relu_pool_bwd<T: WithDType>(
    d: &[T],
    arg: &[u8],
    w: &[T],
    n: usize,
    (c, hh, ww): (usize, usize, usize),
    (o, kh, kw): (usize, usize, usize),
) -> Vec<T> {
    let (oh, ow) = (hh - kh + 1, ww - kw + 1);
    let (h2, w2) = (oh / 2, ow / 2);
    let (ckk, l, pl) = (c * kh * kw, oh * ow, h2 * w2);
    let mut din = vec![T::zero(); n * c * hh * ww];
    let t = per_task(n);
    din.par_chunks_mut(t * c * hh * ww)
        .zip(d.par_chunks((t * o * pl).max(1)))
        .zip(arg.par_chunks((t * o * pl).max(1)))
        .for_each(|((din, d), arg)| {
            let (mut dcols, mut g) = (vec![T::zero(); ckk * l], vec![T::zero(); o * l]);
            for ((img, di), am) in
                din.chunks_mut(c * hh * ww).zip(d.chunks((o * pl).max(1))).zip(arg.chunks((o * pl).max(1)))
            {
                g.fill(T::zero());
                for oc in 0..o {
                    for r in 0..h2 {
                        for q in 0..w2 {
                            let e = oc * pl + r * w2 + q;
                            let k = am[e];
                            if k != STOPPED {
                                let k = k as usize;
                                g[oc * l + (2 * r + k / 2) * ow + 2 * q + k % 2] = di[e];
                            }
                        }
                    }
                }
                // (ckk × o) · (o × L): the patch gradients of one image, summed back onto it.
                let wt = View::transposed(0, ckk);
                gemm_into((ckk, l, o), &mut dcols, View::rows(0, l), w, wt, &g, View::rows(0, l), false);
                col2im(&dcols, img, 1, c, hh, ww, kh, kw);
            }
        });
    din
}

/// The signal `d` at the logits pushed back to the input (`n` examples).
fn backward<T: WithDType>(stages: &[Stage], steps: &[Step<T>], mut d: Vec<T>, n: usize) -> candle_core::Result<Vec<T>> {
    for (i, (s, step)) in stages.iter().zip(steps).enumerate().rev() {
        let shape = &step.shape;
        d = match (s, &step.kept) {
            (_, Kept::InPool) => continue,
            (Stage::MaxPool2, Kept::ReluPool(arg)) => {
                let (Stage::Conv2d(p), conv) = (&stages[i - 2], &steps[i - 2]) else {
                    unreachable!("a fused group starts with its convolution")
                };
                let (o, c, kh, kw) = p.weight.dims4()?;
                let (hh, ww) = (conv.shape[1], conv.shape[2]);
                with_slice(conv.weight.as_ref().expect("weighted"), |w: &[T]| {
                    conv_relu_pool_bwd(&d, arg, w, n, (c, hh, ww), (o, kh, kw))
                })?
            }
            (Stage::Relu, Kept::Relu(out)) => {
                d.par_chunks_mut(CHUNK).zip(out.par_chunks(CHUNK)).for_each(|(d, out)| {
                    for (g, o) in d.iter_mut().zip(out) {
                        if *o <= T::zero() {
                            *g = T::zero();
                        }
                    }
                });
                d
            }
            (Stage::Linear(_), _) if step.sparse.is_some() => step.sparse.as_ref().expect("checked").backward(&d, n),
            (Stage::Linear(p), _) => {
                let (out_f, in_f) = p.weight.dims2()?;
                let mut din = vec![T::zero(); n * in_f];
                with_slice(step.weight.as_ref().expect("weighted"), |w: &[T]| {
                    let (dv, wv) = (View::rows(0, in_f), View::rows(0, in_f));
                    gemm_into((n, in_f, out_f), &mut din, dv, &d, View::rows(0, out_f), w, wv, false)
                })?;
                din
            }
            (Stage::Conv2d(p), _) => {
                let (o, c, kh, kw) = p.weight.dims4()?;
                let (hh, ww) = (shape[1], shape[2]);
                let (oh, ow) = (hh - kh + 1, ww - kw + 1);
                let (ckk, l) = (c * kh * kw, oh * ow);
                let mut din = vec![T::zero(); n * c * hh * ww];
                with_slice(step.weight.as_ref().expect("weighted"), |w: &[T]| {
                    let t = per_task(n);
                    din.par_chunks_mut(t * c * hh * ww).zip(d.par_chunks(t * o * l)).for_each(|(din, g)| {
                        let mut dcols = vec![T::zero(); ckk * l];
                        for (img, gi) in din.chunks_mut(c * hh * ww).zip(g.chunks(o * l)) {
                            // (ckk × o) · (o × L): the patch gradients of one image, summed back onto it.
                            let wt = View::transposed(0, ckk);
                            gemm_into((ckk, l, o), &mut dcols, View::rows(0, l), w, wt, gi, View::rows(0, l), false);
                            col2im(&dcols, img, 1, c, hh, ww, kh, kw);
                        }
                    });
                })?;
                din
            }
            (Stage::MaxPool2, Kept::Pool(arg)) => {
                let (c, hh, ww) = (shape[0], shape[1], shape[2]);
                let (h2, w2) = (hh / 2, ww / 2);
                let mut din = vec![T::zero(); n * c * hh * ww];
                let planes = (h2 * w2).max(1);
                din.par_chunks_mut(hh * ww).zip(arg.par_chunks(planes)).zip(d.par_chunks(planes)).for_each(
                    |((din, arg), d)| {
                        for r in 0..h2 {
                            for q in 0..w2 {
                                let k = arg[r * w2 + q] as usize;
                                din[(2 * r + k / 2) * ww + 2 * q + k % 2] = d[r * w2 + q];
                            }
                        }
                    },
                );
                din
            }
            (Stage::AvgPool2, _) => {
                let (c, hh, ww) = (shape[0], shape[1], shape[2]);
                let (h2, w2) = (hh / 2, ww / 2);
                let quarter = T::from_f64(0.25);
                let mut din = vec![T::zero(); n * c * hh * ww];
                for plane in 0..n * c {
                    for r in 0..h2 {
                        for q in 0..w2 {
                            let g = d[(plane * h2 + r) * w2 + q] * quarter;
                            for k in 0..4 {
                                din[plane * hh * ww + (2 * r + k / 2) * ww + 2 * q + k % 2] = g;
                            }
                        }
                    }
                }
                din
            }
            (Stage::Standardize { std, .. }, _) => {
                let c = if std.len() == 1 { 1 } else { shape[0] };
                let plane = shape.iter().product::<usize>() / c;
                for (e, g) in d.iter_mut().enumerate() {
                    let ch = if c == 1 { 0 } else { (e / plane) % c };
                    *g = T::from_f64(g.to_f64() / std[ch]);
                }
                d
            }
            (Stage::Flatten, _) => d,
            (Stage::Relu | Stage::MaxPool2, _) => unreachable!("the forward pass kept what these need"),
        };
    }
    Ok(d)
}

/// Logits at `x`, the per-example loss, and its input gradient, on raw buffers; `None` when the
/// tensors are not f32/f64 on the CPU (the caller then uses the candle path).
pub(crate) fn loss_and_input_grad(
    stages: &[Stage],
    x: &Tensor,
    loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Option<(Tensor, Tensor, Tensor)>> {
    if !awt_base::device::cpu_kernels(x) {
        return Ok(None);
    }
    match x.dtype() {
        DType::F32 => run::<f32>(stages, x, loss).map(Some),
        DType::F64 => run::<f64>(stages, x, loss).map(Some),
        _ => Ok(None),
    }
}

fn run<T: WithDType>(
    stages: &[Stage],
    x: &Tensor,
    loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let n = x.dim(0)?;
    let (logits, out_shape, steps) = forward::<T>(stages, slice::<T>(x)?, n, x.dims()[1..].to_vec())?;
    let k: usize = out_shape.iter().product();
    let logits = Tensor::from_vec(logits, (n, k), x.device())?;
    // The loss and its gradient at the logits: a few small candle ops.
    let lv = Var::from_tensor(&logits)?;
    let l = loss(lv.as_tensor())?;
    let v = match l.sum_all()?.backward()?.get(lv.as_tensor()) {
        Some(g) => slice::<T>(g)?,
        None => vec![T::zero(); n * k],
    };
    let g = backward::<T>(stages, &steps, v, n)?;
    Ok((logits, l.detach(), Tensor::from_vec(g, x.shape(), x.device())?))
}
