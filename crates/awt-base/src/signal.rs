//! The backward-signal maps of [`Stage::backward`](crate::Stage::backward) as single CPU custom ops:
//! the structured NTK pushes `r` signals per example (one per class) back through every stage and
//! differentiates through them, so each map and its adjoint run over `r` times the batch.
//!
//! - [`ReluRoute`]: `d ⊙ [x > 0]`, the mask read per example (not repeated `r` times);
//! - [`PoolRoute`]: a 2×2 max-pool's signal, each window's value to its first maximum (a scatter;
//!   its adjoint a gather);
//! - [`AvgRoute`](crate::avg_signal::AvgRoute) (its own module): a 2×2 average pool's signal;
//! - [`ConvSignal`]: a convolution's adjoint `col2im(Wᵀ D)`: one gemm per signal into a reused
//!   buffer, or, under a sparse mask, a loop over the kept weights only (work ∝ density).
//!
//! Built from candle ops the same maps cost several full-size temporaries each (repeated masks,
//! one-hots, permutes, pads) in both directions. Each equals its candle formulation, gradients
//! included, and passes central finite differences (tests below).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::Weighted;
use crate::conv::{cpu_slice, dispatch2};
use crate::fused::{ConvDims, conv_dw, conv_dx, conv_fwd, first_max};
use crate::kernels::{axpy, dot, with_slices3};

/// Up to this mask density a convolution's signal loops over the kept weights ([`ConvSignal`]);
/// above it one dense product per signal is cheaper. The NTK's sparse paths use the same threshold.
pub const SPARSE_DENSITY: f64 = 0.25;

/// Applies a CPU op without recording it (the backward passes here are linear maps of `grad`).
pub(crate) fn apply<C: CustomOp2>(a: &Tensor, b: &Tensor, op: C) -> Result<Tensor> {
    a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &op)
}

/// Signals per example: `nn = n·r`.
pub(crate) fn repeats(nn: usize, n: usize, what: &str) -> Result<usize> {
    if n == 0 || !nn.is_multiple_of(n) {
        candle_core::bail!("{what}: {nn} signals are not a whole number per example of {n}");
    }
    Ok(nn / n)
}

/// `d ⊙ [x > 0]` for signals `d: (n·r, …)` and the ReLU's inputs `x: (n, …)` (signal `i·r + s` reads
/// example `i`'s mask). Differentiable in `d`; `x` is a constant.
#[derive(Clone, Copy, Debug)]
pub struct ReluRoute;

fn relu_route<T: WithDType>(d: &[T], x: &[T], n: usize) -> Vec<T> {
    let m = x.len() / n.max(1);
    let r = d.len() / x.len().max(1);
    if m == 0 {
        return d.to_vec();
    }
    let mut out = vec![T::zero(); d.len()];
    // One select per value (vectorised), a task per ≥ ROUTE_TASK values.
    let route = |row: usize, (o, dr): (&mut [T], &[T])| {
        for ((o, &dv), &xv) in o.iter_mut().zip(dr).zip(&x[row / r * m..][..m]) {
            *o = if xv <= T::zero() { T::zero() } else { dv };
        }
    };
    if d.len() >= 2 * ROUTE_TASK {
        let rows = ROUTE_TASK.div_ceil(m);
        out.par_chunks_mut(m).zip(d.par_chunks(m)).with_min_len(rows).enumerate().for_each(|(row, p)| route(row, p));
    } else {
        out.chunks_mut(m).zip(d.chunks(m)).enumerate().for_each(|(row, p)| route(row, p));
    }
    out
}

/// Values per parallel task of [`ReluRoute`] at least (fewer in all: one thread). A select is
/// memory-bound: a 640 × 300 signal took 30 µs on one thread and 60–80 µs split over two
/// (waking the pool costs more than the pass).
const ROUTE_TASK: usize = 1 << 19;

impl CustomOp2 for ReluRoute {
    fn name(&self) -> &'static str {
        "awt-relu-route"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (nn, n) = (l1.shape().dims()[0], l2.shape().dims()[0]);
        repeats(nn, n, "relu-route")?;
        if l1.shape().dims()[1..] != l2.shape().dims()[1..] {
            candle_core::bail!("relu-route: signals {:?} do not fit inputs {:?}", l1.shape(), l2.shape());
        }
        let st = dispatch2!("relu-route", (s1, l1), (s2, l2), |d, x| relu_route(d, x, n));
        Ok((st, l1.shape().clone()))
    }

    fn bwd(&self, _d: &Tensor, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(apply(grad, x, ReluRoute)?), None))
    }
}

/// [`pool_routes`]' mark for a window whose signal stops (its maximum is not positive after a ReLU).
pub const NO_ROUTE: u32 = u32::MAX;

/// Where each window of a 2×2 max-pool sends its signal, for the pool's input `x` (planes of
/// `h × w`): per plane and window (row-major, `(h/2)·(w/2)` per plane) the in-plane position of the
/// window's first maximum (row-major, as [`PoolRoute`] routes), or [`NO_ROUTE`] where `positive` and
/// that maximum is not positive. For ops that consume a pooled signal without forming it.
pub fn pool_routes<T: WithDType>(x: &[T], h: usize, w: usize, positive: bool) -> Vec<u32> {
    let (h2, w2) = (h / 2, w / 2);
    let planes = x.len() / (h * w).max(1);
    let mut out = vec![NO_ROUTE; planes * h2 * w2];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(h2 * w2).enumerate().for_each(|(pl, o)| {
        let plane = &x[pl * h * w..][..h * w];
        for rr in 0..h2 {
            for q in 0..w2 {
                let k = first_max(plane, w, rr, q);
                let at = (2 * rr + k / 2) * w + 2 * q + k % 2;
                if !(positive && plane[at] <= T::zero()) {
                    o[rr * w2 + q] = at as u32;
                }
            }
        }
    });
    out
}

/// A 2×2 max-pool's backward signal: `d: (n·r, c, h/2, w/2)` to `(n·r, c, h, w)`, each window's value
/// at the first maximum (row-major) of the pool's input `x: (n, c, h, w)`, zero elsewhere (odd edges
/// included). Differentiable in `d` (its adjoint gathers); `x` is a constant.
#[derive(Clone, Copy, Debug)]
pub struct PoolRoute {
    /// The pool's input is a ReLU's output: apply that ReLU's backward too, in the same pass (the
    /// signal reaches a maximum only where it is positive, i.e. where the ReLU's input was).
    pub after_relu: bool,
}

/// Scatter (`gather = false`: `d` pooled-size → `out` full-size) or gather (`true`: full-size `d` →
/// pooled-size `out`) through each window's first maximum (only where it is positive with
/// `positive`).
fn pool_route<T: WithDType>(
    d: &[T],
    x: &[T],
    (n, c, h, w): (usize, usize, usize, usize),
    gather: bool,
    positive: bool,
) -> Vec<T> {
    let (h2, w2) = (h / 2, w / 2);
    let planes = x.len() / (h * w).max(1);
    let r = if gather { d.len() / x.len().max(1) } else { d.len() / (planes * h2 * w2).max(1) };
    let (small, big) = (h2 * w2, h * w);
    let out_plane = if gather { small } else { big };
    let mut out = vec![T::zero(); n * r * c * out_plane];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(c * out_plane).enumerate().for_each(|(sig, o)| {
        let ex = sig / r;
        for ci in 0..c {
            let plane = &x[(ex * c + ci) * big..][..big];
            let src = &d[(sig * c + ci) * if gather { big } else { small }..];
            let dst = &mut o[ci * out_plane..][..out_plane];
            for rr in 0..h2 {
                for q in 0..w2 {
                    let k = first_max(plane, w, rr, q);
                    let at = (2 * rr + k / 2) * w + 2 * q + k % 2;
                    if positive && plane[at] <= T::zero() {
                        continue;
                    }
                    if gather {
                        dst[rr * w2 + q] = src[at];
                    } else {
                        dst[at] = src[rr * w2 + q];
                    }
                }
            }
        }
    });
    out
}

impl CustomOp2 for PoolRoute {
    fn name(&self) -> &'static str {
        "awt-pool-route"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (nn, dc, h2, w2) = l1.shape().dims4()?;
        let (n, c, h, w) = l2.shape().dims4()?;
        let r = repeats(nn, n, "pool-route")?;
        if (dc, h2, w2) != (c, h / 2, w / 2) {
            candle_core::bail!("pool-route: signals {:?} do not fit pool inputs {:?}", l1.shape(), l2.shape());
        }
        let relu = self.after_relu;
        let st = dispatch2!("pool-route", (s1, l1), (s2, l2), |d, x| pool_route(d, x, (n, c, h, w), false, relu));
        Ok((st, Shape::from((n * r, c, h, w))))
    }

    fn bwd(&self, _d: &Tensor, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(apply(grad, x, PoolGather { after_relu: self.after_relu })?), None))
    }
}

/// The adjoint of [`PoolRoute`]: `(n·r, c, h, w) → (n·r, c, h/2, w/2)`, each window's first-maximum
/// entry.
#[derive(Clone, Copy, Debug)]
struct PoolGather {
    after_relu: bool,
}

impl CustomOp2 for PoolGather {
    fn name(&self) -> &'static str {
        "awt-pool-gather"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let nn = l1.shape().dims4()?.0;
        let (n, c, h, w) = l2.shape().dims4()?;
        let r = repeats(nn, n, "pool-gather")?;
        let relu = self.after_relu;
        let st = dispatch2!("pool-gather", (s1, l1), (s2, l2), |d, x| pool_route(d, x, (n, c, h, w), true, relu));
        Ok((st, Shape::from((n * r, c, h / 2, w / 2))))
    }

    fn bwd(&self, _d: &Tensor, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(apply(grad, x, PoolRoute { after_relu: self.after_relu })?), None))
    }
}

/// A stride-1 unpadded convolution's backward signal `col2im(Wᵀ D)`: `d: (N, o, oh, ow)`,
/// `w: (o, c, kh, kw)` → `(N, c, oh+kh−1, ow+kw−1)`. With a support (the kept weights of a sparse
/// mask, flat indices into `w`) only those weights are read — the op is then the signal of `w`
/// restricted to its support, and its weight gradient is zero off it. Differentiable in `d` and `w`.
#[derive(Clone, Debug)]
pub struct ConvSignal {
    support: Option<Arc<Vec<usize>>>,
}

impl ConvSignal {
    /// The dense signal.
    pub fn dense() -> ConvSignal {
        ConvSignal { support: None }
    }

    /// The signal of the weights where `mask` is non-zero.
    pub fn sparse(mask: &Tensor) -> Result<ConvSignal> {
        let m = mask_values(mask)?;
        Ok(ConvSignal {
            support: Some(Arc::new(m.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect())),
        })
    }

    fn dims(d: &Shape, w: &Shape) -> Result<ConvDims> {
        let (nn, o, oh, ow) = d.dims4()?;
        let (wo, c, kh, kw) = w.dims4()?;
        if wo != o || kh == 0 || kw == 0 {
            candle_core::bail!("conv-signal: signals {d:?} do not fit weights {w:?}");
        }
        Ok(ConvDims { n: nn, c, h: oh + kh - 1, w: ow + kw - 1, o, kh, kw })
    }
}

/// Per kept weight `e = (o, c, dy, dx)`: `(e, offset of signal channel o, offset of output channel c
/// at (dy, dx))`, decoded once per call (divisions per signal and weight cost as much as the work).
fn offsets(support: &[usize], dm: &ConvDims) -> Vec<(usize, usize, usize)> {
    let (oh, ow) = (dm.h - dm.kh + 1, dm.w - dm.kw + 1);
    let kk = dm.kh * dm.kw;
    support
        .iter()
        .map(|&e| {
            let (o, rem) = (e / (dm.c * kk), e % (dm.c * kk));
            let (c, dy, dx) = (rem / kk, rem % kk / dm.kw, rem % dm.kw);
            (e, o * oh * ow, (c * dm.h + dy) * dm.w + dx)
        })
        .collect()
}

/// Signals per block of the sparse signal's loops: a block is transposed so that its signals are
/// the innermost axis (64 bytes per position), and each kept weight's work per output row becomes one
/// contiguous `axpy` / `dot` of `ow · block` values (128 for LeNet-5's conv2) instead of `block`
/// calls of `ow` (8) values each. Fixed, so the rounding does not depend on the thread count.
fn signal_block<T>() -> usize {
    (64 / std::mem::size_of::<T>()).max(1)
}

/// `(s, len)` rows of `src` → `(len, block)` columns of `dst` (the rows past `s` stay zero).
fn to_columns<T: WithDType>(src: &[T], len: usize, block: usize, dst: &mut [T]) {
    for (j, row) in src.chunks(len.max(1)).enumerate() {
        for (p, &v) in row.iter().enumerate() {
            dst[p * block + j] = v;
        }
    }
}

/// The adjoint of [`to_columns`]: the first `dst.len() / len` columns back into rows.
fn from_columns<T: WithDType>(src: &[T], len: usize, block: usize, dst: &mut [T]) {
    for (j, row) in dst.chunks_mut(len.max(1)).enumerate() {
        for (p, v) in row.iter_mut().enumerate() {
            *v = src[p * block + j];
        }
    }
}

/// The sparse signal: `out[N, c, y+dy, x+dx] += w[e] d[N, o, y, x]` over the kept `e = (o, c, dy, dx)`,
/// on blocks of [`signal_block`] signals in columns.
fn sparse_fwd<T: WithDType>(d: &[T], w: &[T], support: &[usize], dm: &ConvDims) -> Vec<T> {
    let (oh, ow) = (dm.h - dm.kh + 1, dm.w - dm.kw + 1);
    let (img, sig) = (dm.c * dm.h * dm.w, dm.o * oh * ow);
    let kept = offsets(support, dm);
    let b = signal_block::<T>();
    let mut out = vec![T::zero(); dm.n * img];
    out.par_chunks_mut((b * img).max(1)).zip(d.par_chunks((b * sig).max(1))).for_each(|(out, d)| {
        let mut dt = vec![T::zero(); sig * b];
        let mut ot = vec![T::zero(); img * b];
        to_columns(d, sig, b, &mut dt);
        for &(e, src, dst) in &kept {
            for y in 0..oh {
                let (at, to) = ((src + y * ow) * b, (dst + y * dm.w) * b);
                axpy(&mut ot[to..to + ow * b], w[e], &dt[at..at + ow * b]);
            }
        }
        from_columns(&ot, img, b, out);
    });
    out
}

/// Gradients of `⟨grad, sparse signal⟩` with respect to `d` and `w` (zero off the support), on the
/// blocks of [`sparse_fwd`]; the blocks' weight gradients are summed in block order.
fn sparse_bwd<T: WithDType>(d: &[T], w: &[T], g: &[T], support: &[usize], dm: &ConvDims) -> (Vec<T>, Vec<T>) {
    let (oh, ow) = (dm.h - dm.kh + 1, dm.w - dm.kw + 1);
    let (img, sig) = (dm.c * dm.h * dm.w, dm.o * oh * ow);
    let kept = offsets(support, dm);
    let b = signal_block::<T>();
    let mut gd = vec![T::zero(); dm.n * sig];
    let partial: Vec<Vec<T>> = gd
        .par_chunks_mut((b * sig).max(1))
        .zip(d.par_chunks((b * sig).max(1)))
        .zip(g.par_chunks((b * img).max(1)))
        .map(|((gd, d), g)| {
            let (mut dt, mut gdt, mut gt) =
                (vec![T::zero(); sig * b], vec![T::zero(); sig * b], vec![T::zero(); img * b]);
            to_columns(d, sig, b, &mut dt);
            to_columns(g, img, b, &mut gt);
            let mut gw = vec![T::zero(); kept.len()];
            for (acc, &(e, src, dst)) in gw.iter_mut().zip(&kept) {
                for y in 0..oh {
                    let (at, from) = ((src + y * ow) * b, (dst + y * dm.w) * b);
                    let gr = &gt[from..from + ow * b];
                    axpy(&mut gdt[at..at + ow * b], w[e], gr);
                    *acc += dot(&dt[at..at + ow * b], gr);
                }
            }
            from_columns(&gdt, sig, b, gd);
            gw
        })
        .collect();
    let mut gw = vec![T::zero(); w.len()];
    for p in partial {
        for (&e, v) in support.iter().zip(p) {
            gw[e] += v;
        }
    }
    (gd, gw)
}

impl CustomOp2 for ConvSignal {
    fn name(&self) -> &'static str {
        "awt-conv-signal"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = ConvSignal::dims(l1.shape(), l2.shape())?;
        let st = match &self.support {
            None => dispatch2!("conv-signal", (s1, l1), (s2, l2), |d, w| conv_dx(w, d, &dm)),
            Some(sup) => dispatch2!("conv-signal", (s1, l1), (s2, l2), |d, w| sparse_fwd(d, w, sup, &dm)),
        };
        Ok((st, Shape::from((dm.n, dm.c, dm.h, dm.w))))
    }

    fn bwd(&self, d: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dm = ConvSignal::dims(d.shape(), w.shape())?;
        fn run<T: WithDType>(
            op: &ConvSignal,
            d: &Tensor,
            w: &Tensor,
            grad: &Tensor,
            dm: &ConvDims,
        ) -> Result<(Tensor, Tensor)> {
            let (gd, gw) = with_slices3::<T, _>(d, w, grad, |ds, ws, gs| match &op.support {
                // The signal is the convolution's input gradient, so its adjoint in `d` is the
                // convolution of `grad`, and its weight gradient that of a convolution of `grad`
                // whose output gradient is `d`.
                None => (conv_fwd(gs, ws, &vec![T::zero(); dm.o], dm, false), conv_dw(gs, ds, dm).0),
                Some(sup) => sparse_bwd(ds, ws, gs, sup, dm),
            })?;
            Ok((Tensor::from_vec(gd, d.shape(), d.device())?, Tensor::from_vec(gw, w.shape(), w.device())?))
        }
        let (a, b) = match d.dtype() {
            candle_core::DType::F32 => run::<f32>(self, d, w, grad, &dm)?,
            candle_core::DType::F64 => run::<f64>(self, d, w, grad, &dm)?,
            dt => candle_core::bail!("conv-signal: only f32 or f64, got {dt:?}"),
        };
        Ok((Some(a), Some(b)))
    }
}

/// A mask's values in row-major order, read directly (a mask is read at every kernel evaluation:
/// candle's compare-convert-sum chain cost 1.75 ms on LeNet-5's 400,000-weight layer, a scan
/// ≈ 0.2 ms).
pub fn mask_values(mask: &Tensor) -> Result<Vec<f64>> {
    let m = mask.flatten_all()?;
    match m.dtype() {
        candle_core::DType::F32 => Ok(m.to_vec1::<f32>()?.into_iter().map(f64::from).collect()),
        candle_core::DType::F64 => m.to_vec1::<f64>(),
        _ => m.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>(),
    }
}

/// Kept weights over all weights of a mask.
pub fn density(mask: &Tensor) -> Result<f64> {
    let kept = mask_values(mask)?.iter().filter(|v| **v != 0.0).count();
    Ok(kept as f64 / mask.elem_count().max(1) as f64)
}

/// The backward signal of a convolution stage on the CPU: sparse under a mask of density at most
/// [`SPARSE_DENSITY`], dense otherwise (differentiable in `d` and the stage's weight).
pub fn conv_signal(d: &Tensor, p: &Weighted) -> Result<Tensor> {
    let op = match &p.mask {
        Some(m) if density(m)? <= SPARSE_DENSITY => ConvSignal::sparse(m)?,
        _ => ConvSignal::dense(),
    };
    d.contiguous()?.apply_op2(&p.effective_weight()?.contiguous()?, op)
}

#[cfg(test)]
mod tests;
