//! A masked linear layer as a product over its kept weights, for the explicit input gradient
//! ([`super`]): at the study's densities (5 % and 2 % overall, fc1 of LeNet-300-100 at ≈ 4.6 %) the
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

/// The largest kept fraction at which a layer takes the product over kept weights; above it the
/// dense gemm on `W ⊙ M` is used (measured crossover: docs/performance.md, "Sparse layers").
pub(crate) const SPARSE_MAX: f64 = 0.1;

/// A linear layer's kept weights by output row: row `i`'s are `val[ptr[i]..ptr[i + 1]]` at input
/// columns `col[..]`, ascending.
pub(crate) struct SparseLinear<T> {
    out_f: usize,
    in_f: usize,
    ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<T>,
}

impl<T: WithDType> SparseLinear<T> {
    /// The weights of `w` (`(out_f, in_f)`, row-major) where the mask `m` is non-zero, or `None` when
    /// more than [`SPARSE_MAX`] of them are kept (or the layer is too wide for 32-bit indices).
    pub(crate) fn new(w: &[T], m: &[T], out_f: usize, in_f: usize) -> Option<Self> {
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
    pub(crate) fn forward(&self, x: &[T], b: &[T], n: usize) -> Vec<T> {
        let mut y = vec![T::zero(); n * self.out_f];
        let per = n.div_ceil(awt_base::threads().max(1)).max(1);
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

    /// The input gradient `d W` for the `n` rows of `d` (`(n, out_f)`): `(n, in_f)`.
    pub(crate) fn backward(&self, d: &[T], n: usize) -> Vec<T> {
        let mut g = vec![T::zero(); n * self.in_f];
        let per = n.div_ceil(awt_base::threads().max(1)).max(1);
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
        let mut rng = awt_base::Rng::new(3);
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
}
