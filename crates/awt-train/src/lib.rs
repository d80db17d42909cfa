//! Adversarial training of any candle classifier.
//!
//! [`train`] is one readable loop: seeded shuffles, an [`Objective`] (natural, PGD-AT of Madry et
//! al. 2018, FGSM with random start of Wong et al. 2020, TRADES of Zhang et al. 2019), an
//! [`Optimizer`] with PyTorch's update rules, a [`Schedule`], per-epoch clean and PGD evaluation on a
//! fixed subset, and atomic per-epoch checkpoints that `resume` continues bit-identically. It knows
//! nothing of pruning or NTKs: those plug in through [`Hooks`] (re-apply masks after each step, add
//! kernel measurements to the epoch's metrics). A non-finite loss stops the run at that step with an
//! error, leaving the last checkpoint intact.
//!
//! Needs candle, `awt-base` (the `Classifier` interface), `awt-data` (splits and shuffles) and
//! `awt-attack` (the adversaries). See `tests/` for a complete run on synthetic data.

mod optim;
mod run;

pub use optim::{Optimizer, OptimizerConfig, Schedule};
pub use run::{EpochMetrics, Hooks, NoHooks, Objective, RunDir, Summary, TrainConfig, TrainError, train};
