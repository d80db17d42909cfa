//! The Gram matrix `A·Aᵀ` of one operand, for a kernel of a batch with itself (X1 = X2): the
//! product is symmetric, so the rows are cut into bands, one per thread, each multiplied from its
//! diagonal on (one gemm call per band on its own thread, the bands cut so their work is equal),
//! and the rectangles left of the bands are copied transposed from above. Each output is summed as
//! [`gemm_into`] sums it for the plain product — the threads split rows and columns, never the
//! depth, and an FMA chain does not care which operand is which — so the result equals the plain
//! product bit for bit (tested) and is exactly symmetric. Differentiable
//! (`∂⟨G, A·Aᵀ⟩/∂A = (G + Gᵀ)·A`).

use awt_base::conv::cpu_slice;
use awt_base::kernels::{GEMM_SMALL_SIDE, View, copy_view, gemm_into, gemm_into_serial};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Band heights are multiples of this (the gemm microkernel's row tile for f32: 16 lanes).
const ROW_TILE: usize = 16;
/// Below this inner dimension one plain product (both threads in one gemm call) is as fast as bands
/// or faster (measured on the AVX-512 EPYC host, 2 threads, 640 rows: inner 10 0.055 ms plain and
/// 0.063 banded, 50 0.127 both, 100 0.23 and 0.19, 300 0.60 and 0.52, 25,000 55.9 and 39.2).
pub(crate) const MIN_INNER: usize = 64;
/// Below this many rows one plain product (the last band must be wider than GEMM_SMALL_SIDE).
const MIN_ROWS: usize = 2 * GEMM_SMALL_SIDE;
/// Rows per task of the transposing copy.
const TILE: usize = 32;

/// The first row of each band after the first, for `n` rows over `threads` threads: band `i`
/// (rows `r_i..r_{i+1}`, columns `r_i..n`) costs `(r_{i+1} − r_i)(n − r_i)`, and the cuts make these
/// as equal as row tiles allow (the smallest largest band, by bisection; each band but the last
/// a whole number of row tiles). Empty: one band.
pub(crate) fn band_starts(n: usize, threads: usize) -> Vec<usize> {
    if threads < 2 || n < MIN_ROWS {
        return Vec::new();
    }
    // The bands' starts for bands of at most `w` multiply-adds per depth step (greedy from the top),
    // but the last band wider than GEMM_SMALL_SIDE: a product of at most that many rows and
    // columns gemm sums in another depth order (`awt_base::kernels::K_BLOCK`), so every band must
    // take the path the whole product takes, which for these `n` is the large one.
    let cuts = |w: usize| {
        let mut starts = Vec::new();
        let mut r = 0;
        while r < n {
            if r > 0 {
                starts.push(r);
            }
            let mut rows = (w / (n - r) / ROW_TILE * ROW_TILE).max(ROW_TILE);
            if r + rows < n && n - (r + rows) <= GEMM_SMALL_SIDE {
                // Leave the last band GEMM_SMALL_SIDE + 1 rows or more, or take them all.
                rows = (n - r - GEMM_SMALL_SIDE - 1) / ROW_TILE * ROW_TILE;
                if rows == 0 {
                    rows = n - r;
                }
            }
            r = (r + rows).min(n);
        }
        starts
    };
    let (mut lo, mut hi) = (1, n * n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if cuts(mid).len() < threads { hi = mid } else { lo = mid + 1 }
    }
    cuts(lo)
}

fn gram_t<T: WithDType>(a: &[T], n: usize, q: usize, threads: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n * n];
    let starts = band_starts(n, threads);
    if starts.is_empty() {
        gemm_into((n, n, q), (&mut out, View::rows(0, n)), (a, View::rows(0, q)), (a, View::transposed(0, q)), false);
        return out;
    }
    // Each band from its diagonal on: rows r0..r1, columns r0..n.
    let mut bands: Vec<(usize, &mut [T])> = Vec::new();
    let mut rest: &mut [T] = &mut out;
    let mut r0 = 0;
    for &r1 in starts.iter().chain(std::iter::once(&n)) {
        let (band, tail) = std::mem::take(&mut rest).split_at_mut((r1 - r0) * n);
        bands.push((r0, band));
        rest = tail;
        r0 = r1;
    }
    bands.into_par_iter().for_each(|(r0, band)| {
        let m = band.len() / n;
        gemm_into_serial(
            (m, n - r0, q),
            (band, View { offset: r0, rs: n, cs: 1 }),
            (a, View::rows(r0 * q, q)),
            (a, View::transposed(r0 * q, q)),
            false,
        );
    });
    // Left of each band (columns 0..r0): the transpose of the rows above it, which are done.
    for &r0 in &starts {
        let (above, below) = out.split_at_mut(r0 * n);
        let above = &*above;
        let end = starts.iter().find(|&&s| s > r0).copied().unwrap_or(n);
        below[..(end - r0) * n].par_chunks_mut(TILE * n).enumerate().for_each(|(t, rows)| {
            // rows[i, c] = above[c, row0 + i] for c < r0.
            let row0 = r0 + t * TILE;
            let src = View { offset: row0, rs: 1, cs: n };
            copy_view((rows.len() / n, r0), (above, src), (rows, View::rows(0, n)));
        });
    }
    out
}

/// `A·Aᵀ` of a 2-D operand `A: (n, q)` → `(n, n)`.
#[derive(Clone, Copy, Debug)]
pub struct Gram;

impl candle_core::CustomOp1 for Gram {
    fn name(&self) -> &'static str {
        "awt-gram"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, q) = l.shape().dims2()?;
        let st = match s {
            CpuStorage::F32(_) => CpuStorage::F32(gram_t(cpu_slice::<f32>(s, l)?, n, q, awt_base::threads())),
            CpuStorage::F64(_) => CpuStorage::F64(gram_t(cpu_slice::<f64>(s, l)?, n, q, awt_base::threads())),
            _ => candle_core::bail!("gram: only f32 or f64"),
        };
        Ok((st, Shape::from((n, n))))
    }

    fn bwd(&self, a: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(awt_base::product::matmul(&(grad + grad.t()?)?, a)?))
    }
}

/// Lanes of [`dot`]'s partial sums: a fixed number, so that the sum's order (and its bits) is the
/// same on every CPU, and enough for the compiler to keep them in one or two vector registers.
const LANES: usize = 16;

/// `Σ_p a_p b_p` in [`LANES`] interleaved partial sums added in a fixed order at the end.
fn dot<T: WithDType>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += *x * *y;
    }
    acc.iter().fold(T::zero(), |s, v| s + *v)
}

/// Per example `i`, `u_i · v_iᵀ` for `u, v: (n, k, p)` → `(n, k, k)` (the diagonal blocks of a
/// kernel: each example with itself). One dot product of two contiguous rows per entry, examples
/// split over the threads; a batched product would hand each `k × k` block to a chain per output
/// over a strided operand. Differentiable in both arguments (`∂/∂u = G·v`, `∂/∂v = Gᵀ·u`).
#[derive(Clone, Copy, Debug)]
pub struct PerExampleGram;

fn per_example_gram_t<T: WithDType>(u: &[T], v: &[T], (n, k, p): (usize, usize, usize)) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = vec![T::zero(); n * k * k];
    out.par_chunks_mut((k * k).max(1)).enumerate().for_each(|(i, block)| {
        let (ui, vi) = (&u[i * k * p..(i + 1) * k * p], &v[i * k * p..(i + 1) * k * p]);
        for c in 0..k {
            for cc in 0..k {
                block[c * k + cc] = dot(&ui[c * p..(c + 1) * p], &vi[cc * p..(cc + 1) * p]);
            }
        }
    });
    out
}

impl candle_core::CustomOp2 for PerExampleGram {
    fn name(&self) -> &'static str {
        "awt-per-example-gram"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims3()?;
        if l2.shape().dims3()? != dims {
            candle_core::bail!("per-example gram: shapes {:?} and {:?} differ", l1.shape(), l2.shape());
        }
        let st = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(per_example_gram_t(cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?, dims))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(per_example_gram_t(cpu_slice::<f64>(s1, l1)?, cpu_slice::<f64>(s2, l2)?, dims))
            }
            _ => candle_core::bail!("per-example gram: only f32 or f64, both the same"),
        };
        Ok((st, Shape::from((dims.0, dims.1, dims.1))))
    }

    fn bwd(&self, u: &Tensor, v: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        use awt_base::product::matmul;
        Ok((Some(matmul(grad, v)?), Some(matmul(&grad.transpose(1, 2)?, u)?)))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // candle's matmul is the reference here
mod tests {
    use super::*;
    use awt_base::testing::{max_diff, rand, same_gradients};
    use candle_core::{DType, Var};

    /// Bands cover the rows in row tiles, one per thread, with work as equal as the tiles allow.
    #[test]
    fn bands_balance_their_work() {
        assert!(band_starts(640, 1).is_empty());
        assert!(band_starts(127, 2).is_empty());
        for (n, threads) in [(640, 2), (640, 4), (1000, 2), (128, 2), (4096, 16)] {
            let starts = band_starts(n, threads);
            assert_eq!(starts.len() + 1, threads, "n {n}: {starts:?}");
            let bounds: Vec<usize> = std::iter::once(0).chain(starts.iter().copied()).chain([n]).collect();
            assert!(bounds.windows(2).all(|w| w[0] < w[1] && w[0] % ROW_TILE == 0), "n {n}: {bounds:?}");
            assert!(n - starts.last().unwrap() > GEMM_SMALL_SIDE, "n {n}: {bounds:?}");
            let work: Vec<usize> = bounds.windows(2).map(|w| (w[1] - w[0]) * (n - w[0])).collect();
            let (lo, hi) = (*work.iter().min().unwrap(), *work.iter().max().unwrap());
            // The largest band is at most one row tile's work above the average of a perfect cut.
            let total: usize = work.iter().sum();
            assert!(hi <= total / threads + ROW_TILE * n, "n {n}: {work:?}");
            assert!(lo > 0);
        }
        // Two threads: rows 0..r and the square r..n, equal when r n = (n − r)², r ≈ 0.382 n.
        assert_eq!(band_starts(640, 2), vec![240]);
    }

    /// Blocked (several block rows, a ragged last one) and unblocked sizes, f64 and f32: equal to
    /// the plain product, exactly symmetric, and with the product's gradient.
    #[test]
    fn gram_equals_the_product_with_its_transpose_with_gradients() {
        for (n, q) in [(5, 3), (64, 7), (150, 33), (200, 1)] {
            let a = Var::from_tensor(&rand(&[n, q], n as u64)).unwrap();
            let fast = a.as_tensor().apply_op1(Gram).unwrap();
            let slow = a.as_tensor().matmul(&a.as_tensor().t().unwrap()).unwrap();
            assert!(max_diff(&fast, &slow) < 1e-12, "n {n}: {}", max_diff(&fast, &slow));
            assert_eq!(max_diff(&fast, &fast.t().unwrap()), 0.0, "n {n}: not exactly symmetric");
            let r = rand(&[n, n], 7);
            same_gradients(&fast, &slow, &r, &[&a], 1e-11);
            let a32 = a.as_tensor().to_dtype(DType::F32).unwrap();
            let (f32g, s32) = (a32.apply_op1(Gram).unwrap(), a32.matmul(&a32.t().unwrap()).unwrap());
            let rel = max_diff(&f32g, &s32) / max_diff(&s32, &s32.zeros_like().unwrap());
            assert!(rel < 1e-5, "n {n}: f32 relative difference {rel}");
        }
        let bad = rand(&[2, 3, 4], 1).apply_op1(Gram);
        assert!(bad.is_err());
    }
}

/// On one to five threads, in one band or several (ragged ones included), with a depth in one
/// gemm block or several: bit for bit the plain product `awt_base::product::matmul` computes.
#[cfg(test)]
#[test]
fn bands_give_the_plain_products_bits() {
    use awt_base::testing::rand;
    for (n, q) in [(64, 70), (130, 300), (200, 1100), (300, 1100), (161, 64), (640, 100)] {
        let a = rand(&[n, q], n as u64 + 3).to_dtype(candle_core::DType::F32).unwrap();
        let plain: Vec<u32> = awt_base::product::matmul(&a, &a.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let flat = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for threads in 1..=5 {
            let bits: Vec<u32> = gram_t(&flat, n, q, threads).iter().map(|v| v.to_bits()).collect();
            assert!(bits == plain, "n {n} q {q} on {threads} threads ({:?}): the bits differ", band_starts(n, threads));
        }
    }
}
