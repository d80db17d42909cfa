//! Empirical neural tangent kernels Θ(x, x') = J(x) J(x')ᵀ of candle networks.
//!
//! - [`reference()`]: per-(example, class) Jacobian rows from ordinary autograd, contracted into
//!   the kernel. Works for any model given as a closure and its parameters; slow (n·k backward
//!   passes), used as the oracle.
//! - [`structured`]: the kernel as an explicit tensor program over a network's stages
//!   ([`awt_base::Stage`]): forward activations, backward signals formed with tensor ops (ReLU and
//!   max-pool derivatives as detached 0/1 masks), per-layer contractions. Masks enter as the
//!   weights' masks. It is built from first-order ops only, so one ordinary candle backward through
//!   it gives the gradient of any scalar function of the kernel with respect to the weights — the
//!   second-order quantity the AWT search needs and candle cannot form by double backward.
//! - [`structured_blocked`]: the same kernel computed in row/column blocks with bounded memory
//!   (detached).
//! - [`metrics`]: relative Frobenius distance, alignment, trace, spectrum, condition number;
//!   [`Tracker`]: distances of a network's kernel to its initial and a reference kernel over time.
//!
//! Layout: a full kernel of X1 (n1) and X2 (n2) with k classes is `(n1·k, n2·k)`, sample-major
//! (row `i·k + c`); a traced kernel is `(n1, n2)`.
//!
//! Needs only candle and `awt-base`. Example:
//!
//! ```
//! use awt_base::{Rng, Stage, Weighted};
//! use candle_core::{DType, Device, Tensor, Var};
//! let (dev, mut r) = (Device::Cpu, Rng::new(0));
//! let mut var = |shape: (usize, usize)| {
//!     let v: Vec<f64> = (0..shape.0 * shape.1).map(|_| r.normal()).collect();
//!     Var::from_tensor(&Tensor::from_vec(v, shape, &dev).unwrap()).unwrap()
//! };
//! let (w1, w2) = (var((5, 4)), var((3, 5)));
//! let zeros = |n| Tensor::zeros(n, DType::F64, &dev).unwrap();
//! let stages = vec![
//!     Stage::Linear(Weighted { name: "fc1".into(), weight: w1.as_tensor().clone(), bias: zeros(5), mask: None }),
//!     Stage::Relu,
//!     Stage::Linear(Weighted { name: "fc2".into(), weight: w2.as_tensor().clone(), bias: zeros(3), mask: None }),
//! ];
//! let x = Tensor::from_vec((0..8).map(|i| i as f64 / 8.0).collect::<Vec<_>>(), (2, 4), &dev).unwrap();
//! let k = awt_ntk::structured(&stages, &x, &x, awt_ntk::Kind::Full).unwrap();
//! assert_eq!(k.dims(), &[6, 6]); // (n·k, n·k), row i·k + c
//! // The gradient of a scalar of the kernel by one ordinary backward:
//! let g = k.sqr().unwrap().sum_all().unwrap().backward().unwrap();
//! assert!(g.get(w1.as_tensor()).is_some() && g.get(w2.as_tensor()).is_some());
//! ```

mod diagonal;
mod error;
pub mod metrics;
mod ops;
mod reference;
mod structured;
mod tracker;

pub use diagonal::structured_diagonal;
pub use error::NtkError;
pub use reference::reference;
pub use structured::{structured, structured_blocked, trace_full};
pub use tracker::{KernelRecord, Tracker};

/// Full `(n1·k, n2·k)` kernel, or traced over classes `(n1, n2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every class pair.
    Full,
    /// Σ_c Θ[(i,c),(j,c)].
    Trace,
}
