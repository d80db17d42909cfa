//! The explicit input gradient on raw CPU buffers: the forward pass and the vector–Jacobian product
//! of a stage list as loops and direct gemm calls over slices, with no autograd graph, no weight
//! gradients and one buffer per stage. This is what every PGD, APGD and FAB step and every
//! adversarial-training batch spends its time in; candle's per-op dispatch and allocation dominated
//! it for the zoo's small matrices. It computes exactly what [`awt_base::Stage::backward`] does (max-pool
//! gradient to each window's first maximum), checked against it in the tests; tensors stay at the
//! boundary.

use awt_base::kernels::{View, gemm_into, with_slice};
use awt_base::{Stage, Weighted};
use candle_core::{DType, Tensor, Var, WithDType};
use rayon::prelude::*;

mod conv;
use awt_base::sparse::{ConvDims, SparseConv, SparseLinear};
use conv::{ImageConv, conv_relu_pool_bwd, conv_relu_pool_fwd, window_max};

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
    /// window position of the first maximum of the convolution's output, or [`conv::STOPPED`] where that
    /// maximum is not positive (the ReLU passes no gradient). Kept by the max-pool's step; the
    /// convolution's and the ReLU's steps keep [`Kept::InPool`].
    ReluPool(Vec<u8>),
    /// Part of a [`Kept::ReluPool`] group, whose backward runs at the max-pool's step.
    InPool,
}

/// Whether stages `i..i+3` are a convolution, a ReLU and a 2×2 max-pool (run as one).
fn conv_relu_pool(stages: &[Stage], i: usize) -> bool {
    matches!(stages.get(i..i + 3), Some([Stage::Conv2d(_), Stage::Relu, Stage::MaxPool2]))
}

/// A stage's weight as its products use it.
enum Weight<T> {
    /// None (ReLU, pools, flatten, standardisation, and the later steps of a fused group).
    None,
    /// The effective weight `W ⊙ M` (the weight itself when unmasked), for dense products.
    Dense(Tensor),
    /// A masked linear layer's kept weights, when few enough are kept ([`awt_base::sparse::SPARSE_MAX`]).
    Linear(SparseLinear<T>),
    /// A masked convolution's kept weights, when few enough are kept.
    Conv(SparseConv<T>),
}

/// A stage's input shape (without the batch), its weight, and what the backward keeps.
struct Step<T> {
    shape: Vec<usize>,
    weight: Weight<T>,
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

/// A convolution stage's shape over inputs of per-example `shape` `(c, h, w)`.
fn conv_dims(p: &Weighted, shape: &[usize]) -> candle_core::Result<ConvDims> {
    let (o, c, kh, kw) = p.weight.dims4()?;
    Ok(ConvDims { o, c, h: shape[1], w: shape[2], kh, kw })
}

/// Stage `s`'s weight for inputs of per-example `shape`: a masked layer with at most
/// [`awt_base::sparse::SPARSE_MAX`] of its weights kept as its kept weights, any other weighted layer as its
/// effective weight.
fn weight_of<T: WithDType>(s: &Stage, shape: &[usize]) -> candle_core::Result<Weight<T>> {
    let Some(p) = s.weighted() else { return Ok(Weight::None) };
    if let Some(m) = &p.mask {
        let sparse = match s {
            Stage::Linear(_) => {
                let (out_f, in_f) = p.weight.dims2()?;
                with_slice(&p.weight.detach(), |w: &[T]| {
                    with_slice(m, |m: &[T]| SparseLinear::new(w, m, out_f, in_f).map(Weight::Linear))
                })??
            }
            Stage::Conv2d(_) => {
                let dims = conv_dims(p, shape)?;
                with_slice(&p.weight.detach(), |w: &[T]| {
                    with_slice(m, |m: &[T]| SparseConv::new(w, m, dims).map(Weight::Conv))
                })??
            }
            _ => None,
        };
        if let Some(w) = sparse {
            return Ok(w);
        }
    }
    Ok(Weight::Dense(effective(p)?))
}

/// Runs `f` with a convolution step's per-image form.
fn with_conv<T: WithDType, R>(
    weight: &Weight<T>,
    dims: ConvDims,
    f: impl FnOnce(&ImageConv<'_, T>) -> R,
) -> candle_core::Result<R> {
    match weight {
        Weight::Dense(t) => with_slice(t, |w: &[T]| f(&ImageConv::Gemm { w, dims })),
        Weight::Conv(s) => Ok(f(&ImageConv::Sparse(s))),
        Weight::None | Weight::Linear(_) => candle_core::bail!("a convolution step without its weight"),
    }
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
        let weight = weight_of::<T>(s, &shape)?;
        if let (true, Stage::Conv2d(p)) = (conv_relu_pool(stages, i), s) {
            let dims = conv_dims(p, &shape)?;
            let (oh, ow) = dims.out();
            let b = slice::<T>(&p.bias)?;
            let (pooled, arg) = with_conv(&weight, dims, |conv| conv_relu_pool_fwd(&h, conv, &b, n, dims))?;
            h = pooled;
            let o = dims.o;
            steps.push(Step { shape: input_shape, weight, kept: Kept::InPool });
            steps.push(Step { shape: vec![o, oh, ow], weight: Weight::None, kept: Kept::InPool });
            steps.push(Step { shape: vec![o, oh, ow], weight: Weight::None, kept: Kept::ReluPool(arg) });
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
            Stage::Linear(p) if matches!(weight, Weight::Linear(_)) => {
                let b = slice::<T>(&p.bias)?;
                let Weight::Linear(sp) = &weight else { unreachable!("matched") };
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
                let Weight::Dense(wd) = &weight else { candle_core::bail!("a linear step without its weight") };
                with_slice(wd, |w: &[T]| {
                    let wt = View::transposed(0, in_f);
                    gemm_into(
                        (n, out_f, in_f),
                        (&mut out, View::rows(0, out_f)),
                        (&h, View::rows(0, in_f)),
                        (w, wt),
                        true,
                    )
                })?;
                shape = vec![out_f];
                out
            }
            Stage::Conv2d(p) => {
                let dims = conv_dims(p, &shape)?;
                let (o, (oh, ow), l) = (dims.o, dims.out(), dims.positions());
                let b = slice::<T>(&p.bias)?;
                let mut out = vec![T::zero(); n * o * l];
                // Image by image (the patches of one image stay in cache), the batch split over threads.
                with_conv(&weight, dims, |conv| {
                    let t = per_task(n);
                    out.par_chunks_mut(t * o * l).zip(h.par_chunks(t * dims.image())).for_each(|(out, src)| {
                        let mut cols = vec![T::zero(); conv.scratch()];
                        for (img, dst) in src.chunks(dims.image()).zip(out.chunks_mut(o * l)) {
                            conv.forward(img, &b, dst, &mut cols);
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
                                let (best, bi) = window_max([at(0), at(1), at(2), at(3)]);
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
        steps.push(Step { shape: input_shape, weight, kept });
    }
    Ok((h, shape, steps))
}

/// The signal `d` at the logits pushed back to the input (`n` examples).
fn backward<T: WithDType>(stages: &[Stage], steps: &[Step<T>], mut d: Vec<T>, n: usize) -> candle_core::Result<Vec<T>> {
    for (i, (s, step)) in stages.iter().zip(steps).enumerate().rev() {
        let shape = &step.shape;
        d = match (s, &step.kept) {
            (_, Kept::InPool) => continue,
            (Stage::MaxPool2, Kept::ReluPool(arg)) => {
                let (Stage::Conv2d(p), first) = (&stages[i - 2], &steps[i - 2]) else {
                    unreachable!("a fused group starts with its convolution")
                };
                let dims = conv_dims(p, &first.shape)?;
                with_conv(&first.weight, dims, |conv| conv_relu_pool_bwd(&d, arg, conv, n, dims))?
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
            (Stage::Linear(_), _) if matches!(step.weight, Weight::Linear(_)) => {
                let Weight::Linear(sp) = &step.weight else { unreachable!("matched") };
                sp.backward(&d, n)
            }
            (Stage::Linear(p), _) => {
                let (out_f, in_f) = p.weight.dims2()?;
                let Weight::Dense(wd) = &step.weight else { candle_core::bail!("a linear step without its weight") };
                let mut din = vec![T::zero(); n * in_f];
                with_slice(wd, |w: &[T]| {
                    let (dv, wv) = (View::rows(0, in_f), View::rows(0, in_f));
                    gemm_into((n, in_f, out_f), (&mut din, dv), (&d, View::rows(0, out_f)), (w, wv), false)
                })?;
                din
            }
            (Stage::Conv2d(p), _) => {
                let dims = conv_dims(p, shape)?;
                let (o, l) = (dims.o, dims.positions());
                let mut din = vec![T::zero(); n * dims.image()];
                with_conv(&step.weight, dims, |conv| {
                    let t = per_task(n);
                    din.par_chunks_mut(t * dims.image()).zip(d.par_chunks(t * o * l)).for_each(|(din, g)| {
                        let mut dcols = vec![T::zero(); conv.scratch()];
                        for (img, gi) in din.chunks_mut(dims.image()).zip(g.chunks(o * l)) {
                            conv.backward(gi, img, &mut dcols);
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

/// Logits at `x` on raw buffers (no graph); `None` when the tensors are not f32/f64 on the CPU.
pub(crate) fn logits(stages: &[Stage], x: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if !awt_base::device::cpu_kernels(x) {
        return Ok(None);
    }
    fn of<T: WithDType>(stages: &[Stage], x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let (z, shape, _) = forward::<T>(stages, slice::<T>(x)?, n, x.dims()[1..].to_vec())?;
        Tensor::from_vec(z, (n, shape.iter().product::<usize>()), x.device())
    }
    match x.dtype() {
        DType::F32 => of::<f32>(stages, x).map(Some),
        DType::F64 => of::<f64>(stages, x).map(Some),
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
