//! The summation order the gemm crate uses on this CPU, measured: whether two machines can give
//! the same bits for the same run (docs/reproducing.md, "Across CPUs").
//!
//! Every matrix product of candle's CPU backend, and the larger ones of
//! [`crate::kernels::gemm_into`], are gemm's (0.19, with its AVX-512 kernels). It picks two things at
//! run time that move a result's last bits:
//!
//! - **k-blocking.** A product deeper than `kc` is summed block by block (each block one FMA chain
//!   per output, then added to the output), the depth split into the fewest blocks of at most `kc`,
//!   equal but the last. `kc` comes from the L1 cache's size and associativity and the kernel's
//!   register block, read at run time, never below 512: 512 on a 32 KiB 8-way L1 (AMD EPYC, AVX2
//!   kernels) and on a 48 KiB 12-way L1 with AVX-512 kernels (the Intel Xeon of 2026-12-06), 1024
//!   on that same Xeon with AVX2 kernels. (A product of at most 64 × 64 outputs is blocked at 512
//!   from the start, the last block shorter, on every CPU.) LeNet-300-100's first layer is 784
//!   deep. [`crate::kernels::gemm_into`] hands gemm the 512-deep blocks itself
//!   ([`crate::kernels::K_BLOCK`]), so the project's products sum in one order whatever `kc` is.
//! - **Small products** (at most 256 outputs, both operands contiguous along the depth, as a
//!   linear layer's forward on a batch of 25 or fewer is) go to "horizontal" kernels that keep one
//!   FMA chain per SIMD lane and add the lanes by halving: 8 lanes with AVX2, 16 with AVX-512.
//!   [`crate::kernels::gemm_into`] keeps its own small products (and its vectors) from them: it
//!   sums those as plain chains ([`crate::kernels::chain_into`]), the same on every CPU.
//!
//! [`gemm_order`] runs one product of each kind through gemm and names the order whose scalar
//! emulation gives its bits exactly.

use std::fmt;

use crate::kernels::{View, gemm_kernel_into, parallelism};

/// How gemm sums on this CPU (see the module text); `None` where no emulation matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmOrder {
    /// The depth of the k-blocks of a large product (a product at most this deep is one chain).
    pub k_block: Option<usize>,
    /// The lane sums of a small product (1: one chain, like a large one).
    pub small_lanes: Option<usize>,
}

impl fmt::Display for GemmOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.k_block {
            Some(k) => write!(f, "k-blocks of at most {k}")?,
            None => f.write_str("k-blocks not recognised")?,
        }
        match self.small_lanes {
            Some(1) => f.write_str(", small products in one chain"),
            Some(l) => write!(f, ", small products in {l} lanes"),
            None => f.write_str(", small products not recognised"),
        }
    }
}

/// Measures [`GemmOrder`] on this CPU (a few milliseconds, one thread).
pub fn gemm_order() -> GemmOrder {
    // Deep: n > 64 makes gemm size its blocks from the cache (smaller products use 512 always);
    // m·n·k stays below gemm's threading threshold in gemm_kernel_into.
    let (m, n, k) = (4, 100, 4096);
    let (a, b, got) = product(m, n, k, 1);
    let k_block = [512, 1024, 2048, 4096].into_iter().find(|&kc| {
        outputs(m, n)
            .all(|(i, j)| got[i * n + j].to_bits() == blocked(&a[i * k..][..k], &b[j * k..][..k], kc).to_bits())
    });
    let (m, n, k) = (8, 10, 100);
    let (a, b, got) = product(m, n, k, 2);
    let small_lanes = [1, 4, 8, 16].into_iter().find(|&l| {
        outputs(m, n).all(|(i, j)| got[i * n + j].to_bits() == lanes(&a[i * k..][..k], &b[j * k..][..k], l).to_bits())
    });
    GemmOrder { k_block, small_lanes }
}

fn outputs(m: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..m).flat_map(move |i| (0..n).map(move |j| (i, j)))
}

/// `a` (`m × k`, row-major) times `bᵀ` for `b` (`n × k`, row-major: a linear layer's weight), with
/// values in ±1 from the project's generator, as gemm computes it.
fn product(m: usize, n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = crate::Rng::new(seed).derive("gemm-order");
    let mut draw = |len: usize| (0..len).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect::<Vec<f32>>();
    let (a, b) = (draw(m * k), draw(n * k));
    let mut y = vec![0f32; m * n];
    let (av, bv, par) = (View::rows(0, k), View::transposed(0, k), parallelism(m * n * k));
    gemm_kernel_into((m, n, k), (&mut y, View::rows(0, n)), (&a, av), (&b, bv), false, par);
    (a, b, y)
}

/// One FMA chain over `a·b`, in order.
fn chain(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |acc, (x, y)| x.mul_add(*y, acc))
}

/// gemm's blocked sum: the depth split into the fewest blocks of at most `kc`, of equal size but the
/// last (`⌈k / ⌈k / kc⌉⌉`), each a chain, added to the running output in order.
fn blocked(a: &[f32], b: &[f32], kc: usize) -> f32 {
    let block = a.len().div_ceil(a.len().div_ceil(kc).max(1)).max(1);
    a.chunks(block).zip(b.chunks(block)).fold(0.0, |acc, (x, y)| acc + chain(x, y))
}

/// gemm's sum of a product of at most 64 × 64 outputs: blocks of `kc` from the start, the last
/// shorter (gemm-common 0.19 skips its cache model there and takes `kc = min(k, 512)` on every CPU).
#[cfg(test)]
fn first_fit(a: &[f32], b: &[f32], kc: usize) -> f32 {
    a.chunks(kc).zip(b.chunks(kc)).fold(0.0, |acc, (x, y)| acc + chain(x, y))
}

/// A horizontal kernel's sum: lane `l` chains the terms `l, l + lanes, …`, and the lanes are added
/// by halving (`v[i] += v[i + half]`) down to one.
fn lanes(a: &[f32], b: &[f32], lanes: usize) -> f32 {
    let mut v = vec![0f32; lanes];
    for (t, (x, y)) in a.iter().zip(b).enumerate() {
        v[t % lanes] = x.mul_add(*y, v[t % lanes]);
    }
    let mut len = lanes;
    while len > 1 {
        len /= 2;
        for i in 0..len {
            v[i] += v[i + len];
        }
    }
    v[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The emulations sum in the orders they say: one lane or one block is a chain; lanes and
    /// blocks regroup terms whose sum depends on the grouping.
    #[test]
    fn the_emulations_group_terms_as_described() {
        let b = [1.0f32; 4];
        // 2^24 + 1 is not representable: a chain loses each 1 added to 2^24 on its own.
        let a = [16_777_216.0f32, 1.0, 1.0, -16_777_216.0];
        assert_eq!(chain(&a, &b), 0.0);
        assert_eq!(lanes(&a, &b, 1), 0.0);
        assert_eq!(blocked(&a, &b, 4), 0.0);
        // Two blocks: (2^24 + 1) + (1 − 2^24) = 2^24 + (1 − 2^24) = 1.
        assert_eq!(blocked(&a, &b, 2), 1.0);
        // Two lanes: terms 0 and 2, 1 and 3: (2^24 + 1) + (1 − 2^24) again.
        assert_eq!(lanes(&a, &b, 2), 1.0);
        // Four lanes, halving: (2^24 + 1) + (1 − 2^24) again.
        assert_eq!(lanes(&a, &b, 4), 1.0);
        // A depth of 5 in blocks of at most 4 is two blocks of 3 and 2 (gemm's even split), not 4
        // and 1: 2^24 + (1 − 2^24) = 1, where 4 and 1 would give 2^24 − 2^24 = 0.
        let a5 = [16_777_216.0f32, 1.0, 1.0, 1.0, -16_777_216.0];
        assert_eq!(blocked(&a5, &[1.0; 5], 4), 1.0);
    }

    /// The project's own products do not take gemm's small-product kernels: on the small probe
    /// [`crate::kernels::gemm_into`] gives a plain chain per output (`s = s + a·b` in depth order),
    /// where gemm itself (on a CPU whose small products go in lanes) gives other bits.
    #[test]
    fn the_projects_small_products_are_one_chain_where_gemms_are_lanes() {
        let (m, n, k) = (8, 10, 100);
        let (a, b, by_gemm) = product(m, n, k, 2);
        let mut ours = vec![0f32; m * n];
        let (av, bv) = (View::rows(0, k), View::transposed(0, k));
        crate::kernels::gemm_into((m, n, k), (&mut ours, View::rows(0, n)), (&a, av), (&b, bv), false);
        let plain = |x: &[f32], y: &[f32]| x.iter().zip(y).fold(0f32, |s, (p, q)| s + p * q);
        for (i, j) in outputs(m, n) {
            assert_eq!(ours[i * n + j].to_bits(), plain(&a[i * k..][..k], &b[j * k..][..k]).to_bits(), "({i}, {j})");
        }
        if gemm_order().small_lanes.is_some_and(|l| l > 1) {
            assert_ne!(ours, by_gemm, "the probe cannot tell a chain from gemm's lanes");
        }
    }

    /// The project's large products sum in 512-deep blocks on every CPU, whatever gemm's own `kc`:
    /// [`crate::kernels::gemm_into`] gives the 512-block emulation's bits exactly (gemm's even split
    /// above 64 × 64 outputs, its blocks from the start at or below), for depths that split evenly
    /// and unevenly, in both layouts of `b`, accumulating or not, and on a product big enough for
    /// both threads; where gemm blocks at 512 itself, its own bits are the same. On a CPU whose gemm blocks deeper (1024: the Xeon's AVX2 kernels)
    /// gemm itself gives other bits for the 4096-deep probe (`this_cpus_gemm_...` shows they differ).
    #[test]
    fn the_projects_large_products_sum_in_512_deep_blocks_on_every_cpu() {
        for (m, n, k, seed) in [
            (4, 100, 4096, 1),
            (20, 30, 784, 4),
            (17, 17, 1300, 5),
            (64, 160, 1025, 6),
            (300, 40, 600, 7),
            (65, 64, 784, 8),
        ] {
            // At most 64 × 64 outputs gemm itself blocks from the start at 512 on every CPU.
            let small = m <= 64 && n <= 64;
            let sum = |x: &[f32], y: &[f32]| if small { first_fit(x, y, 512) } else { blocked(x, y, 512) };
            let (a, b, by_gemm) = product(m, n, k, seed);
            let bt: Vec<f32> = (0..k * n).map(|t| b[(t % n) * k + t / n]).collect(); // k × n, row-major
            for (bm, bv) in [(&b, View::transposed(0, k)), (&bt, View::rows(0, n))] {
                let mut ours = vec![f32::NAN; m * n];
                crate::kernels::gemm_into(
                    (m, n, k),
                    (&mut ours, View::rows(0, n)),
                    (&a, View::rows(0, k)),
                    (bm, bv),
                    false,
                );
                let mut twice = ours.clone();
                crate::kernels::gemm_into(
                    (m, n, k),
                    (&mut twice, View::rows(0, n)),
                    (&a, View::rows(0, k)),
                    (bm, bv),
                    true,
                );
                for (i, j) in outputs(m, n) {
                    let want = sum(&a[i * k..][..k], &b[j * k..][..k]);
                    assert_eq!(ours[i * n + j].to_bits(), want.to_bits(), "{m}×{n}×{k} at ({i}, {j})");
                    // Accumulating, each block is added to what is there: ((w + b₁) + b₂) + …
                    let mut acc = want;
                    let block = if small { 512 } else { k.div_ceil(k.div_ceil(512)) };
                    for (x, y) in a[i * k..][..k].chunks(block).zip(b[j * k..][..k].chunks(block)) {
                        acc += chain(x, y);
                    }
                    assert_eq!(twice[i * n + j].to_bits(), acc.to_bits(), "{m}×{n}×{k} accumulated at ({i}, {j})");
                }
            }
            if gemm_order().k_block == Some(512) {
                // Where gemm blocks at 512 itself, handing it the blocks changes no bit.
                for (i, j) in outputs(m, n) {
                    let want = sum(&a[i * k..][..k], &b[j * k..][..k]);
                    assert_eq!(by_gemm[i * n + j].to_bits(), want.to_bits(), "gemm, {m}×{n}×{k} at ({i}, {j})");
                }
            }
        }
    }

    /// Just above [`crate::kernels::SMALL_PRODUCT`] (17 × 16, 16 × 17 and 2 × 129 outputs) gemm
    /// itself sums each output as one FMA chain, its main kernels' order, not in lanes: the bound
    /// that sends the project's products to chains covers all of gemm's small-product kernels. A
    /// gemm that widened that branch would fail here.
    #[test]
    fn gemm_sums_products_above_the_small_bound_in_its_main_order() {
        let k = 100;
        for (m, n) in [(17, 16), (16, 17), (2, 129)] {
            assert!(m * n > crate::kernels::SMALL_PRODUCT);
            let (a, b, got) = product(m, n, k, 3);
            for (i, j) in outputs(m, n) {
                let want = chain(&a[i * k..][..k], &b[j * k..][..k]);
                assert_eq!(got[i * n + j].to_bits(), want.to_bits(), "{m}×{n} at ({i}, {j})");
            }
        }
    }

    /// On whatever CPU the tests run, gemm's bits are one of the orders emulated: an upgrade of
    /// gemm that sums otherwise fails here, and docs/reproducing.md must be revisited.
    #[test]
    fn this_cpus_gemm_sums_in_an_emulated_order() {
        let o = gemm_order();
        assert!(o.k_block.is_some() && o.small_lanes.is_some(), "gemm's order not recognised: {o}");
        assert_eq!(o, gemm_order(), "the same order twice");
        // The two products do tell the orders apart: with 4096-deep random terms, blocks of 512
        // and one chain disagree somewhere, and so do 8 and 16 lanes over 100 terms.
        let (m, n, k) = (4, 100, 4096);
        let (a, b, _) = product(m, n, k, 1);
        assert!(outputs(m, n).any(|(i, j)| {
            let (x, y) = (&a[i * k..][..k], &b[j * k..][..k]);
            blocked(x, y, 512).to_bits() != blocked(x, y, 4096).to_bits()
        }));
        let (m, n, k) = (8, 10, 100);
        let (a, b, _) = product(m, n, k, 2);
        assert!(outputs(m, n).any(|(i, j)| {
            let (x, y) = (&a[i * k..][..k], &b[j * k..][..k]);
            lanes(x, y, 8).to_bits() != lanes(x, y, 16).to_bits()
        }));
    }
}
