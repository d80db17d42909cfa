//! Vocabulary shared by every awt crate, and nothing else:
//!
//! - [`Rng`]: the project's own seeded random generator (candle's CPU generator cannot be seeded);
//! - [`Stage`] / [`Staged`]: the layer view through which the NTK crate reads a network without
//!   depending on the networks crate, with each stage's forward map and vector–Jacobian product
//!   ([`Stage::backward`]), [`forward_stages`], [`forward_keep`] and [`backward_stages`], and the
//!   pools [`max_pool2`] (first-maximum gradient) and [`avg_pool2`];
//! - [`conv`]: im2col/col2im custom ops, the convolution and its adjoint; [`signal`]: the backward
//!   signal maps (ReLU, max-pool, convolution — sparse under a sparse mask) as single CPU ops;
//! - [`kernels`]: the bounds-checked gemm call every hand-written CPU path shares (the project's one
//!   `unsafe` block around a kernel); [`numerics`]: the summation order gemm uses on this CPU;
//!   [`product::matmul`]: the tensor product every crate uses instead of candle's `matmul` (on the
//!   CPU through `kernels`, so small products sum alike on every CPU);
//! - [`Classifier`] / [`Autograd`]: the narrow interface attacks and training use (logits and the
//!   input gradient of a per-example loss);
//! - files: [`write_atomic`] (temp file, fsync, rename), [`safetensors_bytes`] (deterministic
//!   safetensors serialisation), [`available_memory`];
//! - [`device`]: the device-generic path (what a GPU runs) and the switch that tests it on the CPU;
//! - [`pin_candle_threads`] for binaries.
//!
//! ```
//! use awt_base::Rng;
//! let mut a = Rng::new(7).derive("init");
//! let mut b = Rng::new(7).derive("init");
//! assert_eq!(a.next_u64(), b.next_u64());
//! ```

pub mod avg_signal;
mod classifier;
pub mod conv;
pub mod device;
pub mod fused;
pub mod kernels;
pub mod numerics;
pub mod product;
mod rng;
pub mod signal;
pub mod sparse;
mod st;
mod stage;
mod step;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use classifier::{Autograd, Classifier};
pub use rng::Rng;
pub use st::safetensors_bytes;
pub use stage::{Stage, Staged, Weighted, avg_pool2, backward_stages, forward_keep, forward_stages, max_pool2};

// gemm: the kernels of `kernels::gemm_into`, and its `x86-v4` feature (AVX-512 kernels, detected at
// run time), which candle's own gemm picks up through feature unification: every crate built on
// awt-base gets OpenBLAS-speed matmul on CPUs that have it.

/// The number of threads candle's CPU ops use (read once: candle looks it up from the OS on every
/// call otherwise).
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

mod fsutil;
pub use fsutil::{available_memory, read_bounded, write_atomic};

/// Fixes `RAYON_NUM_THREADS` to the thread count candle would choose, unless it is already set, and
/// returns the count. Without it candle looks the count up from the OS (CPU topology files) on every
/// matmul: a file read per op, which cost about a third of a small-batch PGD step here (see
/// docs/performance.md). Binaries call it first thing in `main`.
///
/// Also sets `CANDLE_BARRIER_POOL_SPIN_LIMIT=0` unless it is set: candle's own pool for element-wise
/// ops (beside rayon's, which gemm and the fused ops use) otherwise keeps its workers spinning for
/// 25,000 rounds after each op, and on a small machine they spin on the cores the next op needs
/// (22 % of an MLP training step's samples in `perf`; that step 2.18 → 1.63 ms with the workers
/// parking at once, docs/performance.md).
///
/// # Safety
/// Changes the process environment: call it before any other thread exists (nothing may read or
/// write the environment concurrently).
#[allow(unsafe_code)]
pub unsafe fn pin_candle_threads() -> usize {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0") };
    }
    let set = std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 0);
    if let Some(n) = set {
        return n;
    }
    let n = candle_core::utils::get_num_threads();
    // SAFETY: the caller guarantees that no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    n
}

/// Tells mimalloc (the binaries' allocator) never to return freed memory to the OS. Kernel and
/// signal tensors of several MB are allocated and freed at every step; returned to the OS, each
/// was faulted in and zeroed again on its next allocation (13 % of a LeNet-5 kernel-gradient step
/// in page faults, docs/performance.md). The process keeps its peak footprint instead. Binaries call
/// it at the start of `main`.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// `mi_option_purge_delay`, index 15 of mimalloc's option enum in its v2 and v3 headers (default
/// 1000 ms in v3, 10 ms in v2; −1: never purge). The Rust bindings do not name it; a test checks
/// its default.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(all(test, feature = "mimalloc"))]
#[allow(unsafe_code)]
#[test]
fn keep_freed_memory_sets_mimallocs_purge_delay() {
    // SAFETY: reads a process-wide allocator option.
    let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        assert!([1000, 10].contains(&get()), "option 15 is not mimalloc's purge delay (default 1000 or 10 ms)");
    }
    keep_freed_memory();
    assert_eq!(get(), -1);
}

/// A name that is none of the values a setting accepts (an architecture, an initialisation, a norm,
/// an allocation, ...): the `FromStr` error of awt's named choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named, e.g. `architecture`.
    pub what: &'static str,
    /// The name given.
    pub got: String,
    /// The accepted names, in words.
    pub expected: String,
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} `{}`: expected {}", self.what, self.got, self.expected)
    }
}

impl std::error::Error for UnknownName {}
