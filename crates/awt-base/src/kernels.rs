//! The one matrix-multiply kernel the hand-written CPU paths share (the NTK's custom ops, the
//! networks' fused layers and explicit input gradient): gemm's kernels — the ones candle's own
//! matmul uses — on strided views into slices, bounds-checked before the project's single `unsafe`
//! call.

use candle_core::{Tensor, WithDType};

/// Calls `f` with the elements of a CPU tensor of dtype `T`, borrowed from candle's storage (no
/// copy when the tensor is contiguous).
pub fn with_slice<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> candle_core::Result<R> {
    crate::device::kernel_gate("a raw-buffer kernel")?;
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<T>()?;
            let (a, b) = layout
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("a contiguous tensor has no offsets".into()))?;
            Ok(f(&all[a..b]))
        }
        _ => candle_core::bail!("raw-buffer kernels need CPU tensors"),
    }
}

/// [`with_slice`] of three tensors at once: custom ops' backward passes read their inputs in place
/// (a `to_vec1` copy of each cost milliseconds on the NTK's signal tensors).
pub fn with_slices3<T: WithDType, R>(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    f: impl FnOnce(&[T], &[T], &[T]) -> R,
) -> candle_core::Result<R> {
    with_slice(a, |a| with_slice(b, |b| with_slice(c, |c| f(a, b, c))))??
}

/// `Σ_t a[t] b[t]` over the shorter of the two, with eight partial sums (so the compiler vectorises
/// it; the summation order differs from a plain loop's).
pub fn dot<T: WithDType>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut s = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |s, (x, y)| s + *x * *y);
    for (x, y) in ca.zip(cb) {
        for t in 0..8 {
            acc[t] += x[t] * y[t];
        }
    }
    for v in acc {
        s += v;
    }
    s
}

/// Items per parallel task: `n` split evenly over candle's threads.
pub(crate) fn per_task(n: usize) -> usize {
    n.div_ceil(crate::threads().max(1)).max(1)
}

/// Each value of `v` rectified in place (NaN to 0).
pub(crate) fn rectify<T: WithDType>(v: &mut [T]) {
    for e in v.iter_mut() {
        // NaN to 0 as well, as candle's ReLU does.
        if (*e).partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater) {
            *e = T::zero();
        }
    }
}

/// `out += f · a`, elementwise over the shorter of the two.
pub fn axpy<T: WithDType>(out: &mut [T], f: T, a: &[T]) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o += f * x;
    }
}

/// A matrix view into a slice: element `(r, c)` at `offset + r·rs + c·cs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Index of element (0, 0).
    pub offset: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl View {
    /// A row-major `_ × cols` matrix starting at `offset`.
    pub fn rows(offset: usize, cols: usize) -> View {
        View { offset, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major `_ × cols` matrix starting at `offset`.
    pub fn transposed(offset: usize, cols: usize) -> View {
        View { offset, rs: 1, cs: cols }
    }

    fn last(&self, rows: usize, cols: usize) -> usize {
        self.offset + (rows.max(1) - 1) * self.rs + (cols.max(1) - 1) * self.cs
    }
}

/// Products of at least this many multiply-adds use both cores (below it, threads cost more than
/// they save).
const PARALLEL_WORK: usize = 1 << 21;

/// `dst = a·b`, or `dst += a·b` with `accumulate`, for an `m × kk` matrix `a` and a `kk × n`
/// matrix `b` given as views. Panics when a view runs past its slice (so the call into gemm is
/// sound); `dst` cannot alias `a` or `b` (one `&mut`, two `&`).
#[allow(unsafe_code, clippy::too_many_arguments)]
pub fn gemm_into<T: WithDType>(
    (m, n, kk): (usize, usize, usize),
    dst: &mut [T],
    dv: View,
    a: &[T],
    av: View,
    b: &[T],
    bv: View,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if kk == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst[dv.offset + r * dv.rs + c * dv.cs] = T::zero();
                }
            }
        }
        return;
    }
    assert!(
        dv.last(m, n) < dst.len() && av.last(m, kk) < a.len() && bv.last(kk, n) < b.len(),
        "gemm view out of bounds"
    );
    let threads = crate::threads();
    let par = if m * n * kk >= PARALLEL_WORK && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the kernel touches is below the asserted bounds; dst does not alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            kk,
            dst.as_mut_ptr().add(dv.offset),
            dv.cs as isize,
            dv.rs as isize,
            accumulate,
            a.as_ptr().add(av.offset),
            av.cs as isize,
            av.rs as isize,
            b.as_ptr().add(bv.offset),
            bv.cs as isize,
            bv.rs as isize,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_into_equals_the_naive_product_on_strided_views_and_accumulates() {
        let (m, n, k) = (5, 4, 3);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.5 - 3.0).collect(); // row-major m×k
        let b: Vec<f64> = (0..n * k).map(|i| (i as f64).sin()).collect(); // row-major n×k, used transposed
        let mut dst = vec![1.0; m * n];
        gemm_into((m, n, k), &mut dst, View::rows(0, n), &a, View::rows(0, k), &b, View::transposed(0, k), false);
        for r in 0..m {
            for c in 0..n {
                let want: f64 = (0..k).map(|j| a[r * k + j] * b[c * k + j]).sum();
                assert!((dst[r * n + c] - want).abs() < 1e-12);
            }
        }
        let before = dst.clone();
        gemm_into((m, n, k), &mut dst, View::rows(0, n), &a, View::rows(0, k), &b, View::transposed(0, k), true);
        for (d, b) in dst.iter().zip(&before) {
            assert!((d - 2.0 * b).abs() < 1e-12);
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_is_refused() {
        let a = vec![0f32; 5];
        let mut d = vec![0f32; 4];
        gemm_into((2, 2, 3), &mut d, View::rows(0, 2), &a, View::rows(0, 3), &a, View::rows(0, 2), false);
    }
}
