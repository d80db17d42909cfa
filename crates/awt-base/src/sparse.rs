//! Masked layers as products over their kept weights: the explicit input gradient of attacks
//! (awt-nets' raw-buffer path) and training's fused ops ([`crate::fused`]) take these for a layer
//! with at most [`SPARSE_MAX`] of its weights kept. At the study's densities (5 % and 2 % overall, fc1 of LeNet-300-100 at ≈ 4.6 %) the
//! dense gemm on `W ⊙ M` multiplies twenty to fifty zeros for every kept weight, and that gemm is most
//! of every PGD, APGD and FAB step on a sparse MLP.
//!
//! The batch is split into blocks, one per thread; each block's activations are transposed to
//! feature-major (`(features, block)`), so each kept weight is one `axpy` over the block:
//! `yᵀ[i, :] += w_ij · xᵀ[j, :]` forward and `dxᵀ[j, :] += w_ij · dyᵀ[i, :]` backward, both over the
//! kept weights by output row in ascending order. Every output element's sum therefore runs in one
//! fixed order whatever the number of threads or the batch size (deterministic); it is the dense
//! product's sum in another order (equal to rounding, checked in the tests).

use candle_core::WithDType;
use rayon::prelude::*;

use crate::kernels::{per_task, rectify};

/// The largest kept fraction at which a layer takes the product over kept weights; above it the
/// dense gemm on `W ⊙ M` is used (measured crossover: docs/performance.md, "Sparse layers").
pub const SPARSE_MAX: f64 = 0.1;

/// A linear layer's kept weights by output row: row `i`'s are `val[ptr[i]..ptr[i + 1]]` at input
/// columns `col[..]`, ascending.
pub struct SparseLinear<T> {
    out_f: usize,
    in_f: usize,
    ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<T>,
}

impl<T: WithDType> SparseLinear<T> {
    /// The weights of `w` (`(out_f, in_f)`, row-major) where the mask `m` is non-zero, or `None` when
    /// more than [`SPARSE_MAX`] of them are kept (or the layer is too wide for 32-bit indices).
    pub fn new(w: &[T], m: &[T], out_f: usize, in_f: usize) -> Option<Self> {
        assert_eq!((w.len(), m.len()), (out_f * in_f, out_f * in_f), "weight and mask of one shape");
        let kept = m.iter().filter(|v| **v != T::zero()).count();
        if kept as f64 > SPARSE_MAX * m.len() as f64 || in_f > u32::MAX as usize {
            return None;
        }
        let (mut ptr, mut col, mut val) =
            (Vec::with_capacity(out_f + 1), Vec::with_capacity(kept), Vec::with_capacity(kept));
        ptr.push(0);
        for (mrow, wrow) in m.chunks(in_f.max(1)).zip(w.chunks(in_f.max(1))).take(out_f) {
            // 64 mask values to a bit set at a time (a branch-free loop the compiler vectorises), then
            // only the set bits are visited: at 5 % most words are empty.
            for (c, (mc, wc)) in mrow.chunks(64).zip(wrow.chunks(64)).enumerate() {
                let mut bits = 0u64;
                for (t, v) in mc.iter().enumerate() {
                    bits |= u64::from(*v != T::zero()) << t;
                }
                while bits != 0 {
                    let t = bits.trailing_zeros() as usize;
                    col.push((c * 64 + t) as u32);
                    val.push(wc[t]);
                    bits &= bits - 1;
                }
            }
            ptr.push(col.len());
        }
        Some(SparseLinear { out_f, in_f, ptr, col, val })
    }

    /// `x Wᵀ + b` for the `n` rows of `x` (`(n, in_f)`): `(n, out_f)`.
    pub fn forward(&self, x: &[T], b: &[T], n: usize) -> Vec<T> {
        let mut y = vec![T::zero(); n * self.out_f];
        let per = per_task(n);
        y.par_chunks_mut((per * self.out_f).max(1)).zip(x.par_chunks((per * self.in_f).max(1))).for_each(|(y, x)| {
            let m = x.len() / self.in_f.max(1);
            let xt = transpose(x, m, self.in_f);
            let mut yt = vec![T::zero(); self.out_f * m];
            for (i, row) in yt.chunks_mut(m.max(1)).enumerate().take(self.out_f) {
                row.fill(b[i]);
                for k in self.ptr[i]..self.ptr[i + 1] {
                    let j = self.col[k] as usize;
                    axpy(row, self.val[k], &xt[j * m..(j + 1) * m]);
                }
            }
            transpose_into(&yt, self.out_f, m, y);
        });
        y
    }

    /// The weight gradient `dᵀ x` at the kept weights, scattered into a dense `(out_f, in_f)`
    /// matrix (zero elsewhere), for the `n` rows of `d` (`(n, out_f)`) and `x` (`(n, in_f)`): per
    /// block of rows (one per thread) a `dot` per kept weight over the transposed block, the blocks'
    /// sums added in order.
    pub fn weight_grad(&self, x: &[T], d: &[T], n: usize) -> Vec<T> {
        let per = per_task(n);
        let parts: Vec<Vec<T>> = x
            .par_chunks((per * self.in_f).max(1))
            .zip(d.par_chunks((per * self.out_f).max(1)))
            .map(|(x, d)| {
                let m = d.len() / self.out_f.max(1);
                let (xt, dt) = (transpose(x, m, self.in_f), transpose(d, m, self.out_f));
                let mut kept = vec![T::zero(); self.val.len()];
                for (i, drow) in dt.chunks(m.max(1)).enumerate().take(self.out_f) {
                    for k in self.ptr[i]..self.ptr[i + 1] {
                        let j = self.col[k] as usize;
                        kept[k] = crate::kernels::dot(drow, &xt[j * m..(j + 1) * m]);
                    }
                }
                kept
            })
            .collect();
        let mut dw = vec![T::zero(); self.out_f * self.in_f];
        for part in parts {
            for i in 0..self.out_f {
                for k in self.ptr[i]..self.ptr[i + 1] {
                    dw[i * self.in_f + self.col[k] as usize] += part[k];
                }
            }
        }
        dw
    }

    /// The input gradient `d W` for the `n` rows of `d` (`(n, out_f)`): `(n, in_f)`.
    pub fn backward(&self, d: &[T], n: usize) -> Vec<T> {
        let mut g = vec![T::zero(); n * self.in_f];
        let per = per_task(n);
        g.par_chunks_mut((per * self.in_f).max(1)).zip(d.par_chunks((per * self.out_f).max(1))).for_each(|(g, d)| {
            let m = d.len() / self.out_f.max(1);
            let dt = transpose(d, m, self.out_f);
            let mut gt = vec![T::zero(); self.in_f * m];
            for (i, drow) in dt.chunks(m.max(1)).enumerate().take(self.out_f) {
                for k in self.ptr[i]..self.ptr[i + 1] {
                    let j = self.col[k] as usize;
                    axpy(&mut gt[j * m..(j + 1) * m], self.val[k], drow);
                }
            }
            transpose_into(&gt, self.in_f, m, g);
        });
        g
    }
}

/// A convolution's shape: `o` output channels of `c × kh × kw` weights over `c × h × w` images
/// (stride 1, no padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    /// Output channels.
    pub o: usize,
    /// Input channels.
    pub c: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

impl ConvDims {
    /// Output height and width.
    pub fn out(&self) -> (usize, usize) {
        (self.h - self.kh + 1, self.w - self.kw + 1)
    }

    /// Output positions per channel.
    pub fn positions(&self) -> usize {
        let (oh, ow) = self.out();
        oh * ow
    }

    /// Values of one input image.
    pub fn image(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// A masked convolution's kept weights by output channel, for one image at a time. Each output
/// plane is computed "wide": its rows at the input's row stride `w` (the last `w − ow` values of
/// each row but the last are unused), so that a kept weight `(ci, dy, dx)` of channel `oc` is one
/// contiguous `axpy` over the whole plane, `y[oc, p] += w · x[ci·h·w + dy·w + dx + p]`, rather than
/// `oh` short ones (LeNet-5's conv2: 92 values at once instead of 8 rows of 8); the input gradient is
/// the same loop scattered the other way, from the output gradient laid out wide with zeros in the
/// unused columns. At 5 % kept, LeNet-5's conv2 (70 % of the net's multiply-adds) does a twentieth
/// of the dense work. Channel `oc`'s kept weights are `val[ptr[oc]..ptr[oc + 1]]`, at image offsets
/// `off` (`ci·h·w + dy·w + dx`), ascending; every output's sum runs over them in that order, and every
/// input gradient over the channels then their kept weights (deterministic).
pub struct SparseConv<T> {
    dims: ConvDims,
    ptr: Vec<usize>,
    off: Vec<u32>,
    val: Vec<T>,
}

impl<T: WithDType> SparseConv<T> {
    /// The kept weights of `w` (`(o, c, kh, kw)`, row-major) where the mask `m` is non-zero, or `None`
    /// when more than [`SPARSE_MAX`] of them are kept (or an image is too large for 32-bit offsets).
    pub fn new(w: &[T], m: &[T], dims: ConvDims) -> Option<Self> {
        let ConvDims { o, c, h, w: iw, kh, kw } = dims;
        let per = c * kh * kw;
        assert_eq!((w.len(), m.len()), (o * per, o * per), "weight and mask of one shape");
        let kept = m.iter().filter(|v| **v != T::zero()).count();
        if kept as f64 > SPARSE_MAX * m.len() as f64 || dims.image() > u32::MAX as usize {
            return None;
        }
        let (mut ptr, mut off, mut val) =
            (Vec::with_capacity(o + 1), Vec::with_capacity(kept), Vec::with_capacity(kept));
        ptr.push(0);
        for (mc, wc) in m.chunks(per.max(1)).zip(w.chunks(per.max(1))).take(o) {
            for (k, (mv, wv)) in mc.iter().zip(wc).enumerate() {
                if *mv != T::zero() {
                    let (ci, dy, dx) = (k / (kh * kw), (k / kw) % kh, k % kw);
                    off.push((ci * h * iw + dy * iw + dx) as u32);
                    val.push(*wv);
                }
            }
            ptr.push(off.len());
        }
        Some(SparseConv { dims, ptr, off, val })
    }

    /// Values of one wide output plane: `oh − 1` rows of `w`, then one of `ow`.
    fn wide(&self) -> usize {
        let (oh, ow) = self.dims.out();
        (oh.max(1) - 1) * self.dims.w + ow
    }

    /// Scratch values the two image loops need (the `o` wide planes).
    pub fn scratch(&self) -> usize {
        self.dims.o * self.wide()
    }

    /// One image's convolution `(o, oh, ow)` with bias `b` into `y` (overwritten); `wide` is
    /// [`Self::scratch`] values of scratch.
    pub fn image_forward(&self, img: &[T], b: &[T], y: &mut [T], wide: &mut [T]) {
        let (oh, ow) = self.dims.out();
        let (l, wl, iw) = (oh * ow, self.wide(), self.dims.w);
        for (oc, (plane, out)) in wide.chunks_mut(wl.max(1)).zip(y.chunks_mut(l.max(1))).enumerate().take(self.dims.o) {
            plane.fill(b[oc]);
            for k in self.ptr[oc]..self.ptr[oc + 1] {
                let at = self.off[k] as usize;
                axpy(plane, self.val[k], &img[at..at + wl]);
            }
            for (r, row) in out.chunks_mut(ow.max(1)).enumerate() {
                row.copy_from_slice(&plane[r * iw..][..ow]);
            }
        }
    }

    /// Runs `f(k, plane)` for every kept weight `k` of every channel whose output gradient (in `g`,
    /// `(o, oh, ow)`) is not all zero, `plane` being that gradient laid out wide in `wide` (zeros in
    /// the unused columns): what the input and the weight gradients both read.
    fn for_each_kept_wide(&self, g: &[T], wide: &mut [T], mut f: impl FnMut(usize, &[T])) {
        let (oh, ow) = self.dims.out();
        let (l, wl, iw) = (oh * ow, self.wide(), self.dims.w);
        let plane = &mut wide[..wl];
        for (oc, go) in g.chunks(l.max(1)).enumerate().take(self.dims.o) {
            if go.iter().all(|v| *v == T::zero()) {
                continue;
            }
            plane.fill(T::zero());
            for (r, row) in go.chunks(ow.max(1)).enumerate() {
                plane[r * iw..][..ow].copy_from_slice(row);
            }
            for k in self.ptr[oc]..self.ptr[oc + 1] {
                f(k, plane);
            }
        }
    }

    /// The convolution of `n` images `x` with bias `b`, rectified with `relu`: `(n, o, oh, ow)`, the
    /// batch split over candle's threads.
    pub fn forward(&self, x: &[T], b: &[T], n: usize, relu: bool) -> Vec<T> {
        let (o, l, img) = (self.dims.o, self.dims.positions(), self.dims.image());
        let mut out = vec![T::zero(); n * o * l];
        let per = per_task(n);
        out.par_chunks_mut((per * o * l).max(1)).zip(x.par_chunks((per * img).max(1))).for_each(|(out, src)| {
            let mut wide = vec![T::zero(); self.scratch()];
            for (im, dst) in src.chunks(img.max(1)).zip(out.chunks_mut((o * l).max(1))) {
                self.image_forward(im, b, dst, &mut wide);
                if relu {
                    rectify(dst);
                }
            }
        });
        out
    }

    /// The gradients `(dx, dW, db)` of [`Self::forward`] (unrectified) for the output gradient `g`
    /// of `n` images `x`: `dx` only with `need_dx`, `dW` dense with zeros at the weights not kept.
    /// Per thread the kept weights' sums over its images, the threads' sums added in order.
    pub fn grads(&self, x: &[T], g: &[T], n: usize, need_dx: bool) -> (Option<Vec<T>>, Vec<T>, Vec<T>) {
        let (o, l, img) = (self.dims.o, self.dims.positions(), self.dims.image());
        let per = per_task(n);
        let work = |xs: &[T], gs: &[T], mut dxs: Option<&mut [T]>| {
            let mut wide = vec![T::zero(); self.scratch()];
            let (mut kept, mut db) = (vec![T::zero(); self.kept()], vec![T::zero(); o]);
            let wl = self.wide();
            for (e, (im, gi)) in xs.chunks(img.max(1)).zip(gs.chunks((o * l).max(1))).enumerate() {
                for (acc, plane) in db.iter_mut().zip(gi.chunks(l.max(1))) {
                    *acc += plane.iter().fold(T::zero(), |s, v| s + *v);
                }
                // Per kept weight: its weight gradient, a `dot` of the wide output gradient with the
                // image from the weight's offset; and with `dx`, the input gradient's scatter.
                let mut dimg = dxs.as_deref_mut().map(|d| &mut d[e * img..(e + 1) * img]);
                self.for_each_kept_wide(gi, &mut wide, |k, plane| {
                    let at = self.off[k] as usize;
                    kept[k] += crate::kernels::dot(plane, &im[at..at + wl]);
                    if let Some(d) = dimg.as_deref_mut() {
                        axpy(&mut d[at..at + wl], self.val[k], plane);
                    }
                });
            }
            (kept, db)
        };
        let (xc, gc) = (x.par_chunks((per * img).max(1)), g.par_chunks((per * o * l).max(1)));
        let mut dx = vec![T::zero(); if need_dx { n * img } else { 0 }];
        let parts: Vec<(Vec<T>, Vec<T>)> = if need_dx {
            xc.zip(gc).zip(dx.par_chunks_mut((per * img).max(1))).map(|((xs, gs), d)| work(xs, gs, Some(d))).collect()
        } else {
            xc.zip(gc).map(|(xs, gs)| work(xs, gs, None)).collect()
        };
        let (mut kept, mut db) = (vec![T::zero(); self.kept()], vec![T::zero(); o]);
        for (pk, pb) in parts {
            kept.iter_mut().zip(pk).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
        }
        (need_dx.then_some(dx), self.scatter(&kept), db)
    }

    /// Kept weights (the length of [`Self::scatter`]'s input).
    pub fn kept(&self) -> usize {
        self.val.len()
    }

    /// Values per kept weight scattered into a dense `(o, c, kh, kw)` tensor's elements (zero
    /// elsewhere).
    pub fn scatter(&self, kept: &[T]) -> Vec<T> {
        let ConvDims { o, c, h, w, kh, kw } = self.dims;
        let mut dense = vec![T::zero(); o * c * kh * kw];
        for oc in 0..o {
            for k in self.ptr[oc]..self.ptr[oc + 1] {
                let off = self.off[k] as usize;
                let (ci, rest) = (off / (h * w), off % (h * w));
                let (dy, dx) = (rest / w, rest % w);
                dense[((oc * c + ci) * kh + dy) * kw + dx] += kept[k];
            }
        }
        dense
    }

    /// Adds one image's input gradient, from the gradient `g` `(o, oh, ow)` at the convolution's
    /// output, into `dimg` `(c, h, w)`; `wide` as for [`Self::image_forward`]. Channels whose gradient
    /// is all zero (every max-pool window of theirs stopped by the ReLU) are skipped.
    pub fn image_backward(&self, g: &[T], dimg: &mut [T], wide: &mut [T]) {
        let wl = self.wide();
        self.for_each_kept_wide(g, wide, |k, plane| {
            let at = self.off[k] as usize;
            axpy(&mut dimg[at..at + wl], self.val[k], plane);
        });
    }
}

/// `out += f · a` over the shorter of the two, in blocks of eight (so it stays vectorised and
/// inlined here).
#[inline(always)]
fn axpy<T: WithDType>(out: &mut [T], f: T, a: &[T]) {
    let n = out.len().min(a.len());
    let (out, a) = (&mut out[..n], &a[..n]);
    let mut oc = out.chunks_exact_mut(8);
    let mut ac = a.chunks_exact(8);
    for (o, x) in (&mut oc).zip(&mut ac) {
        for t in 0..8 {
            o[t] += f * x[t];
        }
    }
    for (o, x) in oc.into_remainder().iter_mut().zip(ac.remainder()) {
        *o += f * *x;
    }
}

/// The `(cols, rows)` transpose of a row-major `(rows, cols)` matrix.
fn transpose<T: WithDType>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::zero(); rows * cols];
    transpose_into(a, rows, cols, &mut out);
    out
}

/// Writes the `(cols, rows)` transpose of `a` into `out`, in 32 × 32 tiles (both sides of a tile
/// stay in cache).
fn transpose_into<T: WithDType>(a: &[T], rows: usize, cols: usize, out: &mut [T]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward and input gradient equal the dense products on `W ⊙ M` (f64, to rounding) for
    /// masks with empty rows and columns, a batch of one and of several; above the threshold there
    /// is no sparse form.
    #[test]
    fn the_kept_weight_products_equal_the_dense_ones() {
        let mut rng = crate::Rng::new(3);
        for (out_f, in_f, n, keep) in [(7, 11, 5, 0.08), (30, 20, 1, 0.05), (3, 40, 9, 0.1), (4, 4, 2, 0.0)] {
            let w: Vec<f64> = (0..out_f * in_f).map(|_| rng.uniform() - 0.5).collect();
            let mut m: Vec<f64> = (0..out_f * in_f).map(|_| f64::from(u8::from(rng.uniform() < keep))).collect();
            // Never above the threshold, however the draws fell.
            let cap = (SPARSE_MAX * m.len() as f64) as usize;
            m.iter_mut().filter(|v| **v == 1.0).skip(cap).for_each(|v| *v = 0.0);
            let x: Vec<f64> = (0..n * in_f).map(|_| rng.uniform() - 0.5).collect();
            let d: Vec<f64> = (0..n * out_f).map(|_| rng.uniform() - 0.5).collect();
            let b: Vec<f64> = (0..out_f).map(|_| rng.uniform()).collect();
            let s = SparseLinear::new(&w, &m, out_f, in_f).expect("below the threshold");
            let (y, g) = (s.forward(&x, &b, n), s.backward(&d, n));
            for e in 0..n {
                for i in 0..out_f {
                    let want =
                        b[i] + (0..in_f).map(|j| w[i * in_f + j] * m[i * in_f + j] * x[e * in_f + j]).sum::<f64>();
                    assert!((y[e * out_f + i] - want).abs() < 1e-12, "forward ({out_f}×{in_f}, n {n})");
                }
                for j in 0..in_f {
                    let want = (0..out_f).map(|i| w[i * in_f + j] * m[i * in_f + j] * d[e * out_f + i]).sum::<f64>();
                    assert!((g[e * in_f + j] - want).abs() < 1e-12, "input gradient ({out_f}×{in_f}, n {n})");
                }
            }
        }
        let dense = vec![1.0f64; 20];
        assert!(SparseLinear::new(&dense, &dense, 4, 5).is_none());
    }

    /// One image's convolution and its input gradient over the kept weights equal the direct sums
    /// on `W ⊙ M` (f64, to rounding), for non-square kernels and images, channels with no kept
    /// weight, and an output gradient with all-zero channels (skipped); above the threshold there
    /// is no sparse form.
    #[test]
    fn the_kept_weight_convolution_equals_the_direct_sums() {
        let mut rng = crate::Rng::new(4);
        for dims in [
            ConvDims { o: 6, c: 3, h: 9, w: 7, kh: 3, kw: 2 },
            ConvDims { o: 4, c: 2, h: 12, w: 12, kh: 5, kw: 5 },
            ConvDims { o: 3, c: 1, h: 5, w: 6, kh: 1, kw: 1 },
        ] {
            let ConvDims { o, c, h, w: iw, kh, kw } = dims;
            let (oh, ow) = dims.out();
            let per = c * kh * kw;
            let w: Vec<f64> = (0..o * per).map(|_| rng.uniform() - 0.5).collect();
            let mut m: Vec<f64> = (0..o * per).map(|_| f64::from(u8::from(rng.uniform() < 0.1))).collect();
            // Channel 0 keeps nothing; never above the threshold.
            m[..per].iter_mut().for_each(|v| *v = 0.0);
            let cap = (SPARSE_MAX * m.len() as f64) as usize;
            m.iter_mut().filter(|v| **v == 1.0).skip(cap).for_each(|v| *v = 0.0);
            let img: Vec<f64> = (0..dims.image()).map(|_| rng.uniform() - 0.5).collect();
            let b: Vec<f64> = (0..o).map(|_| rng.uniform()).collect();
            let mut g: Vec<f64> = (0..o * oh * ow).map(|_| rng.uniform() - 0.5).collect();
            g[oh * ow..2 * oh * ow].iter_mut().for_each(|v| *v = 0.0);
            let s = SparseConv::new(&w, &m, dims).expect("below the threshold");
            let mut y = vec![f64::NAN; o * oh * ow];
            let mut wide = vec![f64::NAN; s.scratch()];
            s.image_forward(&img, &b, &mut y, &mut wide);
            let mut dimg = vec![0.5; dims.image()];
            s.image_backward(&g, &mut dimg, &mut wide);
            let wm = |oc: usize, ci: usize, dy: usize, dx: usize| {
                let e = ((oc * c + ci) * kh + dy) * kw + dx;
                w[e] * m[e]
            };
            let mut want_d = vec![0.5; dims.image()];
            for oc in 0..o {
                for r in 0..oh {
                    for q in 0..ow {
                        let mut want = b[oc];
                        for ci in 0..c {
                            for dy in 0..kh {
                                for dx in 0..kw {
                                    let at = (ci * h + r + dy) * iw + q + dx;
                                    want += wm(oc, ci, dy, dx) * img[at];
                                    want_d[at] += wm(oc, ci, dy, dx) * g[(oc * oh + r) * ow + q];
                                }
                            }
                        }
                        assert!((y[(oc * oh + r) * ow + q] - want).abs() < 1e-12, "forward {dims:?}");
                    }
                }
            }
            for (a, e) in dimg.iter().zip(&want_d) {
                assert!((a - e).abs() < 1e-12, "input gradient {dims:?}");
            }
        }
        let dense = vec![1.0f64; 2 * 3 * 2 * 2];
        assert!(SparseConv::new(&dense, &dense, ConvDims { o: 2, c: 3, h: 4, w: 4, kh: 2, kw: 2 }).is_none());
    }
}
