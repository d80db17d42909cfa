//! The ticket search of "Finding Dynamics Preserving Adversarial Winning Tickets" (Shi et al.,
//! AISTATS 2022) and its clean-input ancestor, Neural Tangent Transfer (Liu & Zenke, ICML 2020),
//! as specified in the repository's `docs/method.md`.
//!
//! Teacher: the dense network at initialisation, frozen. Student: a copy whose mask starts as the
//! per-layer magnitude top-k of the teacher. Each step on a minibatch (halves X1, X2):
//!
//! ```text
//! L = λ_ker · mean((Θ(X1,X2; m⊙θ_s) − Θ(X1,X2; θ_T))²) + mean((f(X; m⊙θ_s) − f(X; θ_T))²) + (λ_l2/d) Σ‖m⊙W_s‖²
//! ```
//!
//! on clean inputs (NTT) or on the teacher's PGD examples (AWT), Adam on θ_s, and every F steps
//! (not in the last F) the mask is re-selected as the per-layer top-k of |θ_s|. The teacher's kernel,
//! outputs and adversarial examples are constants of each batch; the loss gradient comes from one
//! ordinary backward through the structured kernel (`awt-ntk`). The ticket is the mask and either
//! the transferred weights m⊙θ_s or the rewound m⊙θ_T.
//!
//! Where the paper is silent the choices are options with the defaults of method.md: adversarial
//! examples from the teacher, adversarial inputs only, transferred weights, λ_ker = 1e-3,
//! λ_l2 = 1e-4, F = 100, Adam 5e-4, batch 64.
//!
//! ```no_run
//! use awt_ticket::{search, Method, SearchConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ds = awt_data::load("fashion-mnist-mini", &awt_data::LoadOptions::offline_embedded_only())?;
//! let init = awt_nets::Net::init(&awt_nets::Arch::Lenet300100, awt_nets::Init::KaimingUniform, 0,
//!     candle_core::DType::F32, &candle_core::Device::Cpu)?;
//! let density = awt_runs::Density::new(0.05).unwrap();
//! let cfg = SearchConfig { steps: 400, lambda_ker: 1.0, lr: 5e-3, ..SearchConfig::defaults(Method::Awt, density) }
//!     .validate()?;
//! let ticket = search(&init, &ds.train, &cfg, &mut |log| eprintln!("{log:?}"))?;
//! awt_nets::save(&ticket.net, std::path::Path::new("awt-0.05.safetensors"))?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod hydra;
mod loss;
mod memory;
mod search;
mod state;

pub use config::{AdvSource, InputMix, Method, SearchConfig, ValidSearchConfig, WeightsFrom};
pub use error::SearchError;
pub use hydra::{HYDRA_OPTIMIZER, HYDRA_WEIGHT_DECAY, HydraConfig, hydra, optimise_scores, scaled_scores};
pub use loss::{LossTerms, kernel_distance, loss_terms};
pub use memory::memory_estimate;
pub use search::{Checkpoints, SearchLog, Ticket, rewind_ticket, search, search_resumable};
pub use state::SearchState;
