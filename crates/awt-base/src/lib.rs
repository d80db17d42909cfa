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

// gemm is a dependency only for its `x86-v4` feature (AVX-512 kernels, detected at run time),
// which candle's own gemm then picks up through feature unification.
use gemm as _;

mod fsutil;
pub use fsutil::write_atomic;
