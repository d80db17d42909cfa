//! Vocabulary shared by every awt crate, and nothing else: the project's own seeded random
//! generator (candle's CPU generator cannot be seeded) and the layer view through which the NTK
//! crate reads a network without depending on the networks crate.
//!
//! ```
//! use awt_base::Rng;
//! let mut a = Rng::new(7).derive("init");
//! let mut b = Rng::new(7).derive("init");
//! assert_eq!(a.next_u64(), b.next_u64());
//! ```

mod classifier;
pub mod patches;
mod rng;
mod st;
mod stage;

pub use classifier::{Autograd, Classifier};
pub use rng::Rng;
pub use st::safetensors_bytes;
pub use stage::{Stage, Staged, avg_pool2, forward_stages, max_pool2};

// gemm: for its `x86-v4` feature (AVX-512 kernels, detected at run time), which candle's own gemm
// then picks up through feature unification, and for the kernels of `patches::MaskedPair`.

mod fsutil;
pub use fsutil::{available_memory, write_atomic};

/// Fixes `RAYON_NUM_THREADS` to the thread count candle would choose, unless it is already set, and
/// returns the count. Without it candle looks the count up from the OS (CPU topology files) on every
/// matmul: a file read per op, which cost about a third of a small-batch PGD step here (see
/// docs/performance.md). Binaries call it first thing in `main`.
///
/// # Safety
/// Changes the process environment: call it before any other thread exists (nothing may read or
/// write the environment concurrently).
#[allow(unsafe_code)]
pub unsafe fn pin_candle_threads() -> usize {
    let set = std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 0);
    if let Some(n) = set {
        return n;
    }
    let n = candle_core::utils::get_num_threads();
    // SAFETY: the caller guarantees that no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    n
}
