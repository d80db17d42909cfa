//! Adversarial training of any candle classifier.
//!
//! [`train`] is one readable loop: seeded shuffles, an [`Objective`] (natural, PGD-AT of Madry et
//! al. 2018, FGSM with random start of Wong et al. 2020, TRADES of Zhang et al. 2019), an
//! [`Optimizer`] with PyTorch's update rules, a [`Schedule`], per-epoch clean and PGD evaluation on a
//! fixed subset, and atomic per-epoch checkpoints that `resume` continues bit-identically, in a
//! [`RunFolder`] that one process at a time may hold and that a refused run leaves untouched. It knows
//! nothing of pruning or NTKs: those plug in through [`Hooks`] (re-apply masks after each step, add
//! kernel measurements to the epoch's metrics). A non-finite loss stops the run at that step with an
//! error, leaving the last checkpoint intact.
//!
//! Needs candle, `awt-base` (the `Classifier` interface), `awt-data` (splits and shuffles) and
//! `awt-attack` (the adversaries). A PGD-AT run of a zoo network on the embedded data:
//!
//! ```no_run
//! use awt_train::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ds = awt_data::load("fashion-mnist-mini", &awt_data::LoadOptions::offline_embedded_only())?;
//! let net = awt_nets::Net::init(&awt_nets::Arch::Lenet300100, awt_nets::Init::KaimingUniform, 0,
//!     candle_core::DType::F32, &candle_core::Device::Cpu)?;
//! let cfg = TrainConfig {
//!     epochs: 5, batch_size: 128, lr: 1e-3, seed: 0,
//!     optimizer: OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
//!     schedule: Schedule::Constant,
//!     objective: Objective::Pgd { eps: 0.1, steps: 10, step_size: 0.025 },
//!     eval_n: 1000, eval_eps: 0.1, eval_steps: 20,
//! }
//! .validate()?;
//! let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
//! let run = RunFolder::open("runs/example".as_ref(), &format!("{cfg:?}"), "example", false)?;
//! let summary = train(&net, vars, &ds.train, &ds.test, &cfg, &run, &mut NoHooks)?;
//! println!("PGD accuracy {}", summary.epochs.last().unwrap().robust_acc);
//! # Ok(()) }
//! ```

mod config;
mod error;
mod folder;
mod optim;
mod run;

pub use config::{Objective, TrainConfig, ValidTrainConfig};
pub use error::TrainError;
pub use folder::{CONFIG, RunFolder, lock_folder};
pub use optim::{Optimizer, OptimizerConfig, Schedule};
pub use run::{EpochMetrics, Hooks, NoHooks, Summary, train};
