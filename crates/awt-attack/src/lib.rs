//! Adversarial attacks and robust evaluation for any candle model.
//!
//! A model is an [`awt_base::Classifier`]: logits for inputs in [0, 1] (batch first), and the input
//! gradient of a per-example loss. Any candle `Module` becomes one with `awt_base::Autograd(&m)`;
//! awt-nets' `Net` implements it with an explicit backward pass that skips weight gradients. This
//! crate does not know the awt networks.
//!
//! - [`Fgsm`], [`Pgd`] (ℓ∞ or ℓ2, random start, restarts, cross-entropy or CW-margin loss, targeted),
//!   [`Apgd`] (APGD-CE and APGD-DLR of Croce & Hein 2020: step-size halving at checkpoints,
//!   momentum 0.75), [`ApgdTargeted`] (APGD-T: targeted DLR over the top-9 other classes),
//!   [`FabTargeted`] (FAB-T, ℓ∞: the closest adversarial example toward each of the top-9 classes),
//!   [`Square`] (ℓ∞, gradient-free random search); [`autoattack`]'s standard and fast sequences.
//! - Every attack tracks, per example, the first iterate that fools the model (else the one of highest
//!   loss), and draws its random starts from a per-example stream `Rng::new(seed)...fork(id)`. So
//!   more steps or more restarts can never raise robust accuracy, and results are bit-reproducible
//!   whatever the batch order.
//! - [`evaluate_batch`]: worst case over several attacks (robust = survives all) with per-example
//!   outcomes, and the sanity checks of Carlini et al. 2019 / AutoAttack as [`Warnings`] (among them:
//!   Square breaking points every gradient attack missed, the mark of gradient masking).
//!
//! ```
//! use awt_attack::{Attack, Pgd, Norm, LossKind};
//! use candle_core::{Device, Module, Tensor};
//! struct Linear; // a toy 2-class model: logits = [x0 - x1, x1 - x0]
//! impl Module for Linear {
//!     fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
//!         let d = (x.narrow(1, 0, 1)? - x.narrow(1, 1, 1)?)?;
//!         Tensor::cat(&[&d, &d.neg()?], 1)
//!     }
//! }
//! let x = Tensor::new(&[[0.6f32, 0.4]], &Device::Cpu).unwrap();
//! let y = Tensor::new(&[0u32], &Device::Cpu).unwrap();
//! let pgd = Pgd { eps: 0.2, step_size: 0.05, steps: 10, norm: Norm::Linf, random_start: true, restarts: 1, loss: LossKind::CrossEntropy, seed: 0 };
//! let out = pgd.perturb(&awt_base::Autograd(&Linear), &x, &y, None, &[0]).unwrap();
//! assert_eq!(out.fooled, vec![true]);
//! ```

mod apgd;
mod apgd_t;
pub mod autoattack;
mod core;
mod error;
mod eval;
mod fab;
mod fgsm;
mod loss;
mod pgd;
mod ranking;
mod square;

pub use apgd::Apgd;
pub use apgd_t::ApgdTargeted;
pub use core::{Attack, Outcome, input_gradient};
pub use error::{AttackError, finite_logits};
pub use eval::{BatchEval, Checks, Warnings, evaluate_batch};
pub use fab::FabTargeted;
pub use fgsm::Fgsm;
pub use loss::{LossKind, per_example_loss};
pub use pgd::{Norm, Pgd};
pub use square::Square;
