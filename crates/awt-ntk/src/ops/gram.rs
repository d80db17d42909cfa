//! The Gram matrix `A·Aᵀ` of one operand, for a kernel of a batch with itself (X1 = X2): the
//! product is symmetric, so only the blocks on and above the diagonal are multiplied (one gemm
//! per block row, ≈ (b + 1)/2b of the work with b block rows) and the rest is mirrored, which also
//! makes the result exactly symmetric. Differentiable (`∂⟨G, A·Aᵀ⟩/∂A = (G + Gᵀ)·A`).

use awt_base::conv::cpu_slice;
use awt_base::kernels::{View, gemm_into};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

/// Rows per block row at least this many (the gemm's row tiles stay full), and a multiple of
/// [`ROW_TILE`].
const MIN_BLOCK: usize = 64;
/// The gemm microkernel's row tile (f32: two 8-wide registers).
const ROW_TILE: usize = 16;
/// Block rows aimed at: 8 gives 56 % of the full product's multiply-adds.
const BLOCK_ROWS: usize = 8;
/// Below this inner dimension one full product is faster than block rows and the mirror
/// (measured: LeNet-300-100's 640 × 300 signals lost 1.3 ms of 4.8 when blocked; LeNet-5's
/// 640 × 25,050 per-example gradients gain ≈ 15 %), and [`super::gram`] multiplies plainly.
pub(crate) const MIN_INNER: usize = 2048;
/// Side of the square tiles the mirror copies (two 32 × 32 f64 tiles fit in L1).
const TILE: usize = 32;

/// Rows per block row for an `n`-row operand (`n` itself: one full product).
pub(crate) fn block_rows(n: usize) -> usize {
    let bs = n.div_ceil(BLOCK_ROWS).max(MIN_BLOCK).next_multiple_of(ROW_TILE);
    bs.min(n)
}

fn gram_t<T: WithDType>(a: &[T], n: usize, q: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n * n];
    let bs = block_rows(n);
    for r0 in (0..n).step_by(bs.max(1)) {
        let m = bs.min(n - r0);
        // out[r0.., r0..] = A[r0..r0+m] · A[r0..]ᵀ: this block row from its diagonal block on.
        gemm_into(
            (m, n - r0, q),
            (&mut out, View { offset: r0 * n + r0, rs: n, cs: 1 }),
            (a, View::rows(r0 * q, q)),
            (a, View::transposed(r0 * q, q)),
            false,
        );
    }
    // Below the diagonal, diagonal blocks included, from above it (exactly symmetric), tile by tile.
    for t0 in (0..n).step_by(TILE) {
        for u0 in (0..=t0).step_by(TILE) {
            for r in t0..(t0 + TILE).min(n) {
                for c in u0..(u0 + TILE).min(r) {
                    out[r * n + c] = out[c * n + r];
                }
            }
        }
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
            CpuStorage::F32(_) => CpuStorage::F32(gram_t(cpu_slice::<f32>(s, l)?, n, q)),
            CpuStorage::F64(_) => CpuStorage::F64(gram_t(cpu_slice::<f64>(s, l)?, n, q)),
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

    #[test]
    fn block_rows_cover_small_and_large_operands() {
        assert_eq!(block_rows(10), 10);
        assert_eq!(block_rows(64), 64);
        assert_eq!(block_rows(100), 64);
        assert_eq!(block_rows(640), 80);
        assert_eq!(block_rows(1000), 128);
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
