//! The zoo's layers as single candle custom ops on the CPU, each with a hand-written backward:
//! a linear layer (`x Wᵀ + b`, the bias preloaded into gemm's output), a stride-1 valid convolution
//! (per image: patches into a cache-sized buffer, one gemm; the batch split over candle's threads;
//! the weight gradient accumulated per thread) and 2×2 max-pooling (gradient to each window's first
//! maximum). Built from candle ops the same layers cost several allocations and strided passes each;
//! these are what training and the NTK's forward pass run. They equal the candle formulations
//! (tested in f64 and f32, gradients included, and by finite differences).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::conv::{col2im_add, cpu_slice, dispatch3, im2col_into};
use crate::kernels::{View, gemm_into, per_task, rectify, with_slice};
use crate::sparse::{SparseConv, SparseLinear};

pub use crate::step::{LinfStep, apgd_linf_step, select_rows};

/// `x Wᵀ + b` for `x: (n, in)`, `w: (out, in)`, `b: (out,)` → `(n, out)`; with `relu`, the
/// rectified `max(0, x Wᵀ + b)` in the same pass (a linear stage followed by a ReLU stage).
#[derive(Clone, Debug)]
pub struct Dense {
    /// Rectify the output.
    pub relu: bool,
    /// The layer's 0/1 mask when `w` is `W ⊙ M`: with at most [`crate::sparse::SPARSE_MAX`] of it
    /// kept, the products run over the kept weights, and the weight gradient is computed at the kept
    /// weights only (zero elsewhere — what `W ⊙ M`'s own backward makes of it anyway).
    pub mask: Option<Tensor>,
}

/// `mask`'s values as `T` (the weight's dtype; another dtype takes the dense path).
fn mask_slice<T: WithDType, R>(mask: Option<&Tensor>, f: impl FnOnce(&[T]) -> Option<R>) -> Option<R> {
    with_slice::<T, _>(mask?, f).ok().flatten()
}

/// `g` with the entries where the (rectified) output `y` is not positive zeroed: the ReLU's
/// backward, read from the op's own output.
fn masked_grad<T: WithDType>(g: &[T], y: &[T]) -> Vec<T> {
    g.iter().zip(y).map(|(g, y)| if *y > T::zero() { *g } else { T::zero() }).collect()
}

fn dense_fwd<T: WithDType>(x: &[T], w: &[T], b: &[T], n: usize, out_f: usize, in_f: usize, relu: bool) -> Vec<T> {
    // The bias in every row, copied by rows (a `flat_map` collect pushes element by element).
    let mut out: Vec<T> = Vec::with_capacity(n * out_f);
    for _ in 0..n {
        out.extend_from_slice(b);
    }
    gemm_into(
        (n, out_f, in_f),
        (&mut out, View::rows(0, out_f)),
        (x, View::rows(0, in_f)),
        (w, View::transposed(0, in_f)),
        true,
    );
    if relu {
        rectify(&mut out);
    }
    out
}

/// `(dx, dW, db)` of the linear layer for the pre-activation gradient `g: (n, out)`: `g W`, `gᵀ x`
/// and the column sums of `g` (`dx` only with `need_dx`).
fn dense_bwd<T: WithDType>(
    x: &[T],
    w: &[T],
    g: &[T],
    n: usize,
    out_f: usize,
    in_f: usize,
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>, Vec<T>) {
    let dx = need_dx.then(|| {
        let mut dx = vec![T::zero(); n * in_f];
        gemm_into(
            (n, in_f, out_f),
            (&mut dx, View::rows(0, in_f)),
            (g, View::rows(0, out_f)),
            (w, View::rows(0, in_f)),
            false,
        );
        dx
    });
    let mut dw = vec![T::zero(); out_f * in_f];
    gemm_into(
        (out_f, in_f, n),
        (&mut dw, View::rows(0, in_f)),
        (g, View::transposed(0, out_f)),
        (x, View::rows(0, in_f)),
        false,
    );
    (dx, dw, col_sums(g, out_f))
}

/// The column sums of `g: (_, cols)` (a linear layer's bias gradient).
fn col_sums<T: WithDType>(g: &[T], cols: usize) -> Vec<T> {
    let mut db = vec![T::zero(); cols];
    for row in g.chunks(cols.max(1)) {
        db.iter_mut().zip(row).for_each(|(a, v)| *a += *v);
    }
    db
}

/// Tensors from the raw gradients of a three-input op, shaped like its inputs.
fn grads3<T: WithDType>(
    (dx, dw, db): (Option<Vec<T>>, Vec<T>, Vec<T>),
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let dev = x.device();
    let dx = dx.map(|dx| Tensor::from_vec(dx, x.shape(), dev)).transpose()?;
    Ok((dx, Some(Tensor::from_vec(dw, w.shape(), dev)?), Some(Tensor::from_vec(db, b.shape(), dev)?)))
}

/// Runs `f` on the f32 or f64 elements of `x, w, g` and the op's output `y`.
macro_rules! with4 {
    ($x:expr, $w:expr, $g:expr, $y:expr, |$xs:ident, $ws:ident, $gs:ident, $ys:ident| $body:expr) => {
        match $x.dtype() {
            candle_core::DType::F32 => with_slice::<f32, _>($x, |$xs| {
                with_slice::<f32, _>($w, |$ws| with_slice::<f32, _>($g, |$gs| with_slice::<f32, _>($y, |$ys| $body)))
            })????,
            candle_core::DType::F64 => with_slice::<f64, _>($x, |$xs| {
                with_slice::<f64, _>($w, |$ws| with_slice::<f64, _>($g, |$gs| with_slice::<f64, _>($y, |$ys| $body)))
            })????,
            dt => candle_core::bail!("only f32 or f64, got {dt:?}"),
        }
    };
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        if self.relu { "awt-dense-relu" } else { "awt-dense" }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, in_f) = l1.shape().dims2()?;
        let (out_f, win) = l2.shape().dims2()?;
        if win != in_f || l3.shape().dims1()? != out_f {
            candle_core::bail!("dense: x {:?}, w {:?}, b {:?} do not fit", l1.shape(), l2.shape(), l3.shape());
        }
        let (relu, mask) = (self.relu, self.mask.as_ref());
        let st = dispatch3!("dense", (s1, l1), (s2, l2), (s3, l3), |x, w, b| {
            match mask_slice(mask, |m| SparseLinear::new(w, m, out_f, in_f)) {
                Some(sp) => {
                    let mut y = sp.forward(x, b, n);
                    if relu {
                        rectify(&mut y);
                    }
                    y
                }
                None => dense_fwd(x, w, b, n, out_f, in_f, relu),
            }
        });
        Ok((st, Shape::from((n, out_f))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, in_f) = x.dims2()?;
        let out_f = w.dim(0)?;
        let (need_dx, relu, mask) = (x.track_op(), self.relu, self.mask.as_ref());
        with4!(x, w, g, res, |xs, ws, gs, ys| {
            let g = if relu { std::borrow::Cow::Owned(masked_grad(gs, ys)) } else { std::borrow::Cow::Borrowed(gs) };
            let grads = match mask_slice(mask, |m| SparseLinear::new(ws, m, out_f, in_f)) {
                Some(sp) => (need_dx.then(|| sp.backward(&g, n)), sp.weight_grad(xs, &g, n), col_sums(&g, out_f)),
                None => dense_bwd(xs, ws, &g, n, out_f, in_f, need_dx),
            };
            grads3(grads, x, w, b)
        })
    }
}

/// Stride-1, unpadded convolution with bias: `x: (n, c, h, w)`, `w: (o, c, kh, kw)`, `b: (o,)` →
/// `(n, o, h−kh+1, w−kw+1)`; with `relu`, rectified in the same pass.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Rectify the output.
    pub relu: bool,
    /// The layer's 0/1 mask when `w` is `W ⊙ M`, as for [`Dense`].
    pub mask: Option<Tensor>,
}

pub(crate) struct ConvDims {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
}

impl ConvDims {
    fn of(x: &Shape, w: &Shape) -> Result<ConvDims> {
        let (n, c, h, wd) = x.dims4()?;
        let (o, wc, kh, kw) = w.dims4()?;
        if wc != c || kh > h || kw > wd {
            candle_core::bail!("conv: input {x:?} and weight {w:?} do not fit");
        }
        Ok(ConvDims { n, c, h, w: wd, o, kh, kw })
    }
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn l(&self) -> usize {
        (self.h - self.kh + 1) * (self.w - self.kw + 1)
    }
    fn img(&self) -> usize {
        self.c * self.h * self.w
    }
    fn sparse(&self) -> crate::sparse::ConvDims {
        crate::sparse::ConvDims { o: self.o, c: self.c, h: self.h, w: self.w, kh: self.kh, kw: self.kw }
    }
}

pub(crate) fn conv_fwd<T: WithDType>(x: &[T], w: &[T], b: &[T], d: &ConvDims, relu: bool) -> Vec<T> {
    let (o, ckk, l) = (d.o, d.ckk(), d.l());
    let mut out = vec![T::zero(); d.n * o * l];
    let t = per_task(d.n);
    out.par_chunks_mut(t * o * l).zip(x.par_chunks(t * d.img())).for_each(|(out, src)| {
        let mut cols = vec![T::zero(); ckk * l];
        for (img, dst) in src.chunks(d.img()).zip(out.chunks_mut(o * l)) {
            im2col_into(img, &mut cols, (1, d.c, d.h, d.w), (d.kh, d.kw));
            for (oc, bv) in b.iter().enumerate() {
                dst[oc * l..(oc + 1) * l].fill(*bv);
            }
            gemm_into((o, l, ckk), (dst, View::rows(0, l)), (w, View::rows(0, ckk)), (&cols, View::rows(0, l)), true);
            if relu {
                rectify(dst);
            }
        }
    });
    out
}

/// Gradients of the convolution: `(dx, dw, db)` from the output gradient `g` (`dx` left zero
/// unless `need_dx`: a network's input rarely needs one).
fn conv_bwd<T: WithDType>(x: &[T], w: &[T], g: &[T], d: &ConvDims, need_dx: bool) -> (Option<Vec<T>>, Vec<T>, Vec<T>) {
    let dx = need_dx.then(|| conv_dx(w, g, d));
    let (dw, db) = conv_dw(x, g, d);
    (dx, dw, db)
}

/// The convolution's input gradient `dx_i = col2im(Wᵀ g_i)` for every image `i` (the adjoint of the
/// convolution applied to `g`).
pub(crate) fn conv_dx<T: WithDType>(w: &[T], g: &[T], d: &ConvDims) -> Vec<T> {
    let (o, ckk, l) = (d.o, d.ckk(), d.l());
    let mut dx = vec![T::zero(); d.n * d.img()];
    let t = per_task(d.n);
    dx.par_chunks_mut(t * d.img()).zip(g.par_chunks(t * o * l)).for_each(|(dx, g)| {
        let mut dcols = vec![T::zero(); ckk * l];
        for (dimg, gi) in dx.chunks_mut(d.img()).zip(g.chunks(o * l)) {
            gemm_into(
                (ckk, l, o),
                (&mut dcols, View::rows(0, l)),
                (w, View::transposed(0, ckk)),
                (gi, View::rows(0, l)),
                false,
            );
            col2im_add(&dcols, dimg, (1, d.c, d.h, d.w), (d.kh, d.kw));
        }
    });
    dx
}

/// The convolution's weight and bias gradients `Σ_i g_i colsᵢᵀ` and `Σ_i Σ_pos g_i`, accumulated per
/// thread.
pub(crate) fn conv_dw<T: WithDType>(x: &[T], g: &[T], d: &ConvDims) -> (Vec<T>, Vec<T>) {
    let (o, ckk, l) = (d.o, d.ckk(), d.l());
    let t = per_task(d.n);
    let partial: Vec<(Vec<T>, Vec<T>)> = x
        .par_chunks(t * d.img())
        .zip(g.par_chunks(t * o * l))
        .map(|(src, g)| {
            let mut cols = vec![T::zero(); ckk * l];
            let (mut dw, mut db) = (vec![T::zero(); o * ckk], vec![T::zero(); o]);
            for (img, gi) in src.chunks(d.img()).zip(g.chunks(o * l)) {
                // dW += g_i colsᵢᵀ: (o × L)(L × ckk).
                im2col_into(img, &mut cols, (1, d.c, d.h, d.w), (d.kh, d.kw));
                gemm_into(
                    (o, ckk, l),
                    (&mut dw, View::rows(0, ckk)),
                    (gi, View::rows(0, l)),
                    (&cols, View::transposed(0, l)),
                    true,
                );
                for (oc, acc) in db.iter_mut().enumerate() {
                    *acc += gi[oc * l..(oc + 1) * l].iter().fold(T::zero(), |s, v| s + *v);
                }
            }
            (dw, db)
        })
        .collect();
    let (mut dw, mut db) = (vec![T::zero(); o * ckk], vec![T::zero(); o]);
    for (pw, pb) in partial {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        if self.relu { "awt-conv-relu" } else { "awt-conv" }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = ConvDims::of(l1.shape(), l2.shape())?;
        if l3.shape().dims1()? != d.o {
            candle_core::bail!("conv: bias {:?} does not fit {} output channels", l3.shape(), d.o);
        }
        let (relu, mask) = (self.relu, self.mask.as_ref());
        let st = dispatch3!("conv", (s1, l1), (s2, l2), (s3, l3), |x, w, b| {
            match mask_slice(mask, |m| SparseConv::new(w, m, d.sparse())) {
                Some(sp) => sp.forward(x, b, d.n, relu),
                None => conv_fwd(x, w, b, &d, relu),
            }
        });
        Ok((st, Shape::from((d.n, d.o, d.h - d.kh + 1, d.w - d.kw + 1))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = ConvDims::of(x.shape(), w.shape())?;
        let (need_dx, relu, mask) = (x.track_op(), self.relu, self.mask.as_ref());
        with4!(x, w, g, res, |xs, ws, gs, ys| {
            let g = if relu { std::borrow::Cow::Owned(masked_grad(gs, ys)) } else { std::borrow::Cow::Borrowed(gs) };
            let grads = match mask_slice(mask, |m| SparseConv::new(ws, m, d.sparse())) {
                Some(sp) => sp.grads(xs, &g, d.n, need_dx),
                None => conv_bwd(xs, ws, &g, &d, need_dx),
            };
            grads3(grads, x, w, b)
        })
    }
}

/// 2×2 max-pool, stride 2, floor mode, whose gradient goes to each window's first maximum
/// (row-major), as PyTorch and JAX route it.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool;

/// The row-major position (0..4) of the first maximum of window `(r, q)` of a `w`-wide plane.
pub(crate) fn first_max<T: WithDType>(plane: &[T], w: usize, r: usize, q: usize) -> usize {
    let at = |k: usize| plane[(2 * r + k / 2) * w + 2 * q + k % 2];
    let (mut best, mut bi) = (at(0), 0);
    for k in 1..4 {
        if at(k) > best {
            best = at(k);
            bi = k;
        }
    }
    bi
}

fn pool_fwd<T: WithDType>(x: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let (h2, w2) = (h / 2, w / 2);
    let mut out = vec![T::zero(); planes * h2 * w2];
    out.par_chunks_mut(h2 * w2).zip(x.par_chunks(h * w)).for_each(|(out, plane)| {
        for r in 0..h2 {
            for q in 0..w2 {
                let k = first_max(plane, w, r, q);
                out[r * w2 + q] = plane[(2 * r + k / 2) * w + 2 * q + k % 2];
            }
        }
    });
    out
}

fn pool_bwd<T: WithDType>(x: &[T], g: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let (h2, w2) = (h / 2, w / 2);
    let mut dx = vec![T::zero(); planes * h * w];
    dx.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).zip(g.par_chunks(h2 * w2)).for_each(|((dx, plane), g)| {
        for r in 0..h2 {
            for q in 0..w2 {
                let k = first_max(plane, w, r, q);
                dx[(2 * r + k / 2) * w + 2 * q + k % 2] = g[r * w2 + q];
            }
        }
    });
    dx
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "awt-maxpool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let st = match s {
            CpuStorage::F32(_) => CpuStorage::F32(pool_fwd(cpu_slice::<f32>(s, l)?, n * c, h, w)),
            CpuStorage::F64(_) => CpuStorage::F64(pool_fwd(cpu_slice::<f64>(s, l)?, n * c, h, w)),
            _ => candle_core::bail!("max-pool: only f32 or f64"),
        };
        Ok((st, Shape::from((n, c, h / 2, w / 2))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let dx = match x.dtype() {
            candle_core::DType::F32 => Tensor::from_vec(
                with_slice::<f32, _>(x, |xs| with_slice::<f32, _>(g, |gs| pool_bwd(xs, gs, n * c, h, w)))??,
                x.shape(),
                x.device(),
            )?,
            candle_core::DType::F64 => Tensor::from_vec(
                with_slice::<f64, _>(x, |xs| with_slice::<f64, _>(g, |gs| pool_bwd(xs, gs, n * c, h, w)))??,
                x.shape(),
                x.device(),
            )?,
            dt => candle_core::bail!("max-pool: only f32 or f64, got {dt:?}"),
        };
        Ok(Some(dx))
    }
}

#[cfg(test)]
mod tests;
