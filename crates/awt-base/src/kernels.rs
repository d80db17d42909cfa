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

/// Products of at most this many outputs (and those of one row or one column) are summed by
/// [`chain_into`], not by gemm: gemm gives them to kernels that sum the depth in one partial sum per
/// SIMD lane, so their bits depend on the CPU (docs/reproducing.md, "Across CPUs"). The bounds are
/// gemm-common 0.19's own (`gemm_basic_generic`): its horizontal kernels take products of at most
/// 16 × 16 outputs, its gemv ones a single row or column. `numerics`' tests fail if a gemm upgrade
/// moves the first bound up (products just above it must come back in gemm's main order).
pub const SMALL_PRODUCT: usize = 256;

/// The deepest block [`gemm_into`] hands gemm. gemm sums a product deeper than its `kc` block by
/// block (each block one FMA chain per output, then added to the output), and above 64 × 64
/// outputs reads `kc` from the L1 cache and its kernel at run time: 512 on the project's machines
/// with AVX-512 kernels, 1024 on the Intel Xeon with AVX2 ones, never less than 512 (gemm-common
/// 0.19's `kernel_params`). Split as gemm splits (the fewest blocks of at most 512, equal but the
/// last), such a product is summed in the 512-block order on every CPU. (At most 64 × 64 outputs
/// gemm blocks at 512 from the start on every CPU, and is left to do so.)
pub const K_BLOCK: usize = 512;

/// Products with more rows or columns than this take gemm's cache model (see [`K_BLOCK`]).
pub const GEMM_SMALL_SIDE: usize = 64;

/// `dst = a·b`, or `dst += a·b` with `accumulate`, for an `m × kk` matrix `a` and a `kk × n`
/// matrix `b` given as views. Panics when a view runs past its slice (so the call into gemm is
/// sound); `dst` cannot alias `a` or `b` (one `&mut`, two `&`).
///
/// A small product (at most [`SMALL_PRODUCT`] outputs, or one row or one column) is summed by
/// [`chain_into`], in one order on every CPU; a larger one by gemm, in depth blocks of at most
/// [`K_BLOCK`] that gemm sums as one block each whatever its own run-time `kc`
/// ([`crate::numerics`]), so in one order on every CPU too.
pub fn gemm_into<T: WithDType>(
    dims: (usize, usize, usize),
    (dst, dv): (&mut [T], View),
    (a, av): (&[T], View),
    (b, bv): (&[T], View),
    accumulate: bool,
) {
    gemm_into_with(dims, (dst, dv), (a, av), (b, bv), accumulate, true, true)
}

/// [`gemm_into`] on the calling thread only, for callers that split their own work over the
/// threads (each output's bits are the same as [`gemm_into`]'s: the threads split rows and
/// columns, never the depth).
pub fn gemm_into_serial<T: WithDType>(
    dims: (usize, usize, usize),
    dst: (&mut [T], View),
    a: (&[T], View),
    b: (&[T], View),
    accumulate: bool,
) {
    gemm_into_with(dims, dst, a, b, accumulate, false, true)
}

/// A product of a few rows (at most GEMM_SMALL_SIDE, and at most one per this many columns) of a
/// row-major `a` and a `b` read down its columns (`x·Wᵀ` of a small batch and a row-major weight) is
/// computed as its transpose `W·xᵀ` ([`gemm_into`] explains why the bits are the same). gemm packs
/// such a `b` slowly, column by column, and a small batch has few rows to spread that over:
/// `x·Wᵀ` for a batch of 64 and LeNet-300-100's first layer (300 × 784) took 0.177 ms, its transpose
/// with the copies 0.106 ms; LeNet-5's fc1 (500 × 800) 0.411 and 0.161 ms. At 128 rows the copies
/// ate the gain (a forward pass 8 % slower), and a band of 240 rows of a Gram `A·Aᵀ` lost 6 %
/// (measured on the AVX-512 EPYC host, 2 threads).
const FLIP_ROWS_PER_COLUMN: usize = 4;
/// ... and of at least this depth, where the copies are a small share of the work (the gain was
/// measured at depths 784 and 800).
const FLIP_MIN_DEPTH: usize = 256;

/// Whether [`gemm_into`] computes an `m × n` product of depth `kk` of these operands as its transpose.
fn flips((m, n, kk): (usize, usize, usize), av: View, bv: View) -> bool {
    let small = m <= GEMM_SMALL_SIDE && n <= GEMM_SMALL_SIDE;
    let few = m > 1 && m <= GEMM_SMALL_SIDE && FLIP_ROWS_PER_COLUMN * m <= n && kk >= FLIP_MIN_DEPTH;
    few && !small && m * n > SMALL_PRODUCT && av.cs == 1 && bv.rs == 1 && bv.cs != 1
}

#[allow(clippy::too_many_arguments)] // the public functions' arguments and two switches
fn gemm_into_with<T: WithDType>(
    dims: (usize, usize, usize),
    (dst, dv): (&mut [T], View),
    (a, av): (&[T], View),
    (b, bv): (&[T], View),
    accumulate: bool,
    threads: bool,
    flip: bool,
) {
    let (m, n, kk) = dims;
    if m * n <= SMALL_PRODUCT || m == 1 || n == 1 {
        return chain_into(dims, (dst, dv), (a, av), (b, bv), accumulate);
    }
    // `(a·b)ᵀ = bᵀ·aᵀ` where that packs faster: every output is the same FMA chain over the same depth
    // blocks (the product of two numbers does not depend on their order, and which path a product
    // takes — chain, small, depth blocks — depends on m and n symmetrically), so the bits are the
    // same; `dst` goes through a transposed copy (and comes in through one when accumulating).
    let small = m <= GEMM_SMALL_SIDE && n <= GEMM_SMALL_SIDE;
    if flip && flips(dims, av, bv) {
        let mut t = vec![T::zero(); n * m];
        if accumulate {
            copy_view((m, n), (dst, dv), (&mut t, View::transposed(0, m)));
        }
        let (at, bt) = (View { rs: bv.cs, cs: bv.rs, ..bv }, View { rs: av.cs, cs: av.rs, ..av });
        gemm_into_with((n, m, kk), (&mut t, View::rows(0, m)), (b, at), (a, bt), accumulate, threads, false);
        let dt = View { rs: dv.cs, cs: dv.rs, ..dv };
        return copy_view((n, m), (&t, View::rows(0, m)), (dst, dt));
    }
    // gemm, in depth blocks each added to `dst` after the first: at most 64 × 64 outputs the whole
    // depth in one call (gemm blocks it at 512 from the start on every CPU); above, blocks of at most
    // K_BLOCK split as gemm splits, which it sums as one block each whatever its own `kc`. The
    // threads are the whole product's.
    let depth = if small { kk.max(1) } else { kk.div_ceil(kk.div_ceil(K_BLOCK).max(1)).max(1) };
    let par = if threads { parallelism(m * n * kk) } else { gemm::Parallelism::None };
    let mut k0 = 0;
    loop {
        let d = depth.min(kk - k0);
        let (ab, bb) = (View { offset: av.offset + k0 * av.cs, ..av }, View { offset: bv.offset + k0 * bv.rs, ..bv });
        gemm_kernel_into((m, n, d), (dst, dv), (a, ab), (b, bb), accumulate || k0 > 0, par);
        k0 += d;
        if k0 >= kk {
            break;
        }
    }
}

/// `dst[r, c] = src[r, c]` for an `rows × cols` matrix, in square tiles: a transposing copy when one
/// view is row-major and the other column-major (the tiles keep the strided side's lines in L1).
pub fn copy_view<T: WithDType>((rows, cols): (usize, usize), (src, sv): (&[T], View), (dst, dv): (&mut [T], View)) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[dv.offset + r * dv.rs + c * dv.cs] = src[sv.offset + r * sv.rs + c * sv.cs];
                }
            }
        }
    }
}

/// Both cores for products of at least [`PARALLEL_WORK`] multiply-adds.
pub(crate) fn parallelism(work: usize) -> gemm::Parallelism {
    let threads = crate::threads();
    if work >= PARALLEL_WORK && threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None }
}

/// [`gemm_into`] as one chain per output in depth order (`s = s + a·b`, each product and each sum
/// rounded), then stored (or added to `dst` with `accumulate`): the same bits on every CPU. For the
/// small products [`gemm_into`] gives it, where it costs microseconds.
pub fn chain_into<T: WithDType>(
    (m, n, kk): (usize, usize, usize),
    (dst, dv): (&mut [T], View),
    (a, av): (&[T], View),
    (b, bv): (&[T], View),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dv.last(m, n) < dst.len() && (kk == 0 || (av.last(m, kk) < a.len() && bv.last(kk, n) < b.len())),
        "gemm view out of bounds"
    );
    // Each output's sum runs over the depth in order; the outputs of a row advance together (so
    // the compiler can vectorise across them where `b`'s rows are contiguous), which leaves every
    // output's order as a plain chain's.
    let mut sums = vec![T::zero(); n];
    for r in 0..m {
        sums.iter_mut().for_each(|s| *s = T::zero());
        let a0 = av.offset + r * av.rs;
        for t in 0..kk {
            let x = a[a0 + t * av.cs];
            let b0 = bv.offset + t * bv.rs;
            if bv.cs == 1 {
                for (s, &y) in sums.iter_mut().zip(&b[b0..b0 + n]) {
                    *s += x * y;
                }
            } else {
                for (c, s) in sums.iter_mut().enumerate() {
                    *s += x * b[b0 + c * bv.cs];
                }
            }
        }
        for (c, &s) in sums.iter().enumerate() {
            let o = &mut dst[dv.offset + r * dv.rs + c * dv.cs];
            *o = if accumulate { *o + s } else { s };
        }
    }
}

/// One call of gemm (`dst = a·b`, or `+=`), its views' bounds asserted first: the summation order is
/// gemm's own on this CPU ([`crate::numerics`] measures it through this).
#[allow(unsafe_code)]
pub(crate) fn gemm_kernel_into<T: WithDType>(
    (m, n, kk): (usize, usize, usize),
    (dst, dv): (&mut [T], View),
    (a, av): (&[T], View),
    (b, bv): (&[T], View),
    accumulate: bool,
    par: gemm::Parallelism,
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

    /// A batch times a weight's transpose, computed as its transpose (`flips`): bit for bit the
    /// product computed as it is, with and without accumulating, in one depth block and several,
    /// into a strided output, f32 and f64; on both sides of the switch's bounds.
    #[test]
    fn a_flipped_product_has_the_unflipped_bits() {
        let mut rng = crate::Rng::new(11);
        let mut flipped = 0;
        for (m, n, k) in [
            (32, 300, 784),
            (64, 300, 1100),
            (16, 65, 300),
            (8, 100, 256),
            (65, 300, 500),
            (64, 255, 300),
            (128, 600, 400),
            (8, 60, 300),
            (32, 300, 255),
        ] {
            let a = rng.uniform_vec_f32(m * k, -1.0, 1.0);
            let w = rng.uniform_vec_f32(n * k, -1.0, 1.0);
            let (av, bv) = (View::rows(0, k), View::transposed(0, k));
            flipped += usize::from(flips((m, n, k), av, bv));
            for accumulate in [false, true] {
                // Output rows of n + 3 with 3 columns of padding, starting at 2.
                let dv = View { offset: 2, rs: n + 3, cs: 1 };
                let start = rng.uniform_vec_f32(2 + m * (n + 3), -1.0, 1.0);
                let (mut with, mut without) = (start.clone(), start.clone());
                gemm_into((m, n, k), (&mut with, dv), (&a, av), (&w, bv), accumulate);
                gemm_into_with((m, n, k), (&mut without, dv), (&a, av), (&w, bv), accumulate, true, false);
                let same = with.iter().zip(&without).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m} × {n} × {k}, accumulate {accumulate}: the bits differ");
                // And in f64.
                let (a64, w64): (Vec<f64>, Vec<f64>) =
                    (a.iter().map(|v| f64::from(*v)).collect(), w.iter().map(|v| f64::from(*v)).collect());
                let mut with: Vec<f64> = start.iter().map(|v| f64::from(*v)).collect();
                let mut without = with.clone();
                gemm_into((m, n, k), (&mut with, dv), (&a64, av), (&w64, bv), accumulate);
                gemm_into_with((m, n, k), (&mut without, dv), (&a64, av), (&w64, bv), accumulate, true, false);
                let same = with.iter().zip(&without).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "f64 {m} × {n} × {k}, accumulate {accumulate}: the bits differ");
            }
        }
        assert_eq!(flipped, 4, "the cases should straddle the switch");
    }

    /// Small products (the chain), vectors and large products (gemm), on strided views, with and
    /// without accumulating.
    #[test]
    fn gemm_into_equals_the_naive_product_on_strided_views_and_accumulates() {
        for (m, n, k) in [(5, 4, 3), (20, 17, 9), (1, 300, 7), (300, 1, 7)] {
            let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.5 - 3.0).collect(); // row-major m×k
            let b: Vec<f64> = (0..n * k).map(|i| (i as f64).sin()).collect(); // row-major n×k, used transposed
            let mut dst = vec![1.0; m * n];
            gemm_into(
                (m, n, k),
                (&mut dst, View::rows(0, n)),
                (&a, View::rows(0, k)),
                (&b, View::transposed(0, k)),
                false,
            );
            for r in 0..m {
                for c in 0..n {
                    let want: f64 = (0..k).map(|j| a[r * k + j] * b[c * k + j]).sum();
                    assert!((dst[r * n + c] - want).abs() < 1e-12 * (1.0 + want.abs()), "{m}×{n}×{k}");
                }
            }
            let before = dst.clone();
            gemm_into(
                (m, n, k),
                (&mut dst, View::rows(0, n)),
                (&a, View::rows(0, k)),
                (&b, View::transposed(0, k)),
                true,
            );
            for (d, b) in dst.iter().zip(&before) {
                assert!((d - 2.0 * b).abs() < 1e-12 * (1.0 + b.abs()), "{m}×{n}×{k}");
            }
        }
    }

    /// A product of at most [`SMALL_PRODUCT`] outputs, or a vector, is one chain per output in
    /// depth order whatever the CPU's SIMD width: terms that a chain and any split into lanes or
    /// blocks sum differently give the chain's answer, from both layouts of `b`. The shapes are
    /// those the search and the evaluations meet (numerics' test shows gemm itself splits them).
    #[test]
    fn small_products_sum_in_one_chain_on_every_cpu() {
        let k = 34;
        let row = crate::testing::cancelling_row(k);
        for (m, n) in [(16, 16), (8, 10), (32, 1), (1, 400), (400, 1)] {
            let a: Vec<f32> = row.iter().copied().cycle().take(m * k).collect(); // m × k, row-major
            let ones = vec![1f32; n * k];
            let mut dst = vec![f32::NAN; m * n];
            gemm_into(
                (m, n, k),
                (&mut dst, View::rows(0, n)),
                (&a, View::rows(0, k)),
                (&ones, View::transposed(0, k)),
                false,
            );
            assert!(dst.iter().all(|&v| v == 0.0), "{m}×{n}: not one chain: {:?}", &dst[..4.min(dst.len())]);
            gemm_into((m, n, k), (&mut dst, View::rows(0, n)), (&a, View::rows(0, k)), (&ones, View::rows(0, n)), true);
            assert!(dst.iter().all(|&v| v == 0.0), "{m}×{n}: not one chain");
        }
    }

    /// The chain's outputs advance together but each sums in depth order: the same bits as a
    /// scalar chain per output, on every layout of `a` and `b`, storing and accumulating.
    #[test]
    fn chain_into_is_a_scalar_chain_per_output() {
        let mut rng = crate::Rng::new(7);
        let mut draw = |len: usize| (0..len).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect::<Vec<f32>>();
        for (m, n, k) in [(32, 1, 32), (32, 7, 32), (1, 300, 50), (16, 10, 100), (3, 5, 0)] {
            let (a, b, init) = (draw(m * k), draw(k * n), draw(m * n));
            for (av, bv) in [
                (View::rows(0, k), View::rows(0, n)),
                (View::transposed(0, m), View::transposed(0, k)),
                (View::rows(0, k), View::transposed(0, k)),
            ] {
                for accumulate in [false, true] {
                    let mut got = init.clone();
                    chain_into((m, n, k), (&mut got, View::rows(0, n)), (&a, av), (&b, bv), accumulate);
                    for r in 0..m {
                        for c in 0..n {
                            let mut s = 0f32;
                            for t in 0..k {
                                s += a[av.offset + r * av.rs + t * av.cs] * b[bv.offset + t * bv.rs + c * bv.cs];
                            }
                            let want = if accumulate { init[r * n + c] + s } else { s };
                            assert_eq!(got[r * n + c].to_bits(), want.to_bits(), "{m}×{n}×{k} ({r}, {c})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_is_refused() {
        let a = vec![0f32; 5];
        let mut d = vec![0f32; 4];
        gemm_into((2, 2, 3), (&mut d, View::rows(0, 2)), (&a, View::rows(0, 3)), (&a, View::rows(0, 2)), false);
    }
}
