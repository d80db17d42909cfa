//! Pruning masks and the pruning-at-initialisation scores the AWT paper compares against.
//!
//! - [`select`]: turns per-weight scores into 0/1 masks at a target density with an
//!   [`Allocation`]: per layer (the paper's and NTT's default), global, or ERK (Evci et al. 2020).
//!   Exact: each scope keeps `round(d · size)` weights, every kept score ≥ every pruned score,
//!   ties go to the lower flat index, and a layer that would be emptied is an error, never silent.
//! - [`scores`]: random, magnitude, SNIP (Lee et al. 2019), GraSP (Wang et al. 2020, its
//!   Hessian-gradient product by central finite differences of gradients because candle has no
//!   double backward), SynFlow (Tanaka et al. 2020, data-free, iterative with an exponential
//!   schedule), NTK-SAP (Wang et al. 2023, data-free and weight-agnostic: the mask gradient of a
//!   finite-difference estimate of the NTK's trace over fresh initialisations and noise inputs,
//!   iterative like SynFlow).
//! - [`Target`]: where a pruning ends, a density under an allocation or exactly another mask's
//!   per-layer counts ([`kept_counts`]), so that any score can be read at any allocation; the
//!   iterative scores move each layer toward its count on their exponential schedule.
//! - [`cut_off`]: the units a mask leaves without any kept incoming or outgoing weight.
//! - [`shuffle_within_layers`]: each layer's mask permuted at random, its density kept ("missing the
//!   mark"'s sanity check: does a score choose more than the per-layer densities?).
//! - [`rescale_kept`]: a ticket's kept weights scaled so each unit keeps its dense incoming norm
//!   (variance-preserving, for masks at initialisation at low density).
//!
//! Masks are `BTreeMap<weight name, Tensor of 0/1>` with the weights' names and shapes, as stored in
//! checkpoints beside their weight (`<name>_mask`). Needs only candle and `awt-base`. Example:
//!
//! ```
//! use std::collections::BTreeMap;
//! use awt_prune::{scores, select, Allocation};
//! use candle_core::{Device, Tensor};
//! let w = Tensor::new(&[[0.3f32, -0.9, 0.1], [0.5, -0.2, 0.8]], &Device::Cpu).unwrap();
//! let weights = BTreeMap::from([("fc1.weight".to_string(), w)]);
//! let masks = select(&scores::magnitude(&weights).unwrap(), awt_runs::Density::new(0.5).unwrap(), Allocation::Uniform).unwrap();
//! assert_eq!(masks["fc1.weight"].to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 0.0], vec![1.0, 0.0, 1.0]]);
//! ```
//!
//! Any score at another mask's allocation ([`Target::Counts`]): each layer keeps as many weights as
//! that mask does there, chosen by this score (here magnitude at a global mask's per-layer counts):
//!
//! ```
//! use std::collections::BTreeMap;
//! use awt_prune::{kept_counts, scores, select, Allocation, Target};
//! use candle_core::{Device, Tensor};
//! let dev = Device::Cpu;
//! let weights = BTreeMap::from([
//!     ("fc1.weight".to_string(), Tensor::new(&[[0.9f32, 0.8, 0.7, 0.6], [0.5, 0.4, 0.3, 0.2]], &dev).unwrap()),
//!     ("fc2.weight".to_string(), Tensor::new(&[[0.1f32, 0.05], [0.01, 0.95]], &dev).unwrap()),
//! ]);
//! let magnitude = scores::magnitude(&weights).unwrap();
//! let global = select(&magnitude, awt_runs::Density::new(0.5).unwrap(), Allocation::Global).unwrap();
//! let counts = kept_counts(&global).unwrap();
//! assert_eq!(counts, BTreeMap::from([("fc1.weight".to_string(), 5), ("fc2.weight".to_string(), 1)]));
//! // Random scores held to those counts: a random mask with the global mask's allocation.
//! let random = scores::random(&weights, 7).unwrap();
//! let held = Target::Counts(&counts).select(&random).unwrap();
//! assert_eq!(kept_counts(&held).unwrap(), counts);
//! ```

mod alloc;
mod ntk_sap;
mod rescale;
pub mod scores;
mod shuffle;
mod structure;
mod target;

pub use alloc::{Allocation, Masks, PruneError, kept_counts, layer_densities, select, select_counts, select_keeping};
pub use rescale::rescale_kept;
pub use shuffle::shuffle_within_layers;
pub use structure::{CutOff, cut_off};
pub use target::{Target, check_counts, counts_text};
