//! The paper's networks as masked, seeded, checkpointable candle models.
//!
//! A [`Net`] is an architecture ([`Arch`]), its parameters as candle `Var`s keyed by PyTorch names
//! (`fc1.weight: (out, in)`, `conv1.weight: (out, in, kh, kw)`), and optional 0/1 masks on weights
//! (never on biases). The forward pass multiplies each weight by its mask, so pruned weights get
//! an exactly-zero gradient. Checkpoints are safetensors files that a PyTorch module with the same
//! attribute names loads with `load_state_dict` (masks sit beside their weight as `<name>_mask`,
//! the same key `torch.nn.utils.prune` uses, so load those with `strict=False`).
//!
//! Needs only candle and `awt-base`. Example, from plain candle code:
//!
//! ```
//! use awt_nets::{Arch, Init, Net};
//! use candle_core::{Device, DType, Module, Tensor};
//! let net = Net::init(&"lenet-300-100".parse::<Arch>().unwrap(), Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
//! assert_eq!(net.forward(&x).unwrap().dims(), &[2, 10]);
//! ```

mod arch;
mod checkpoint;
mod fast;
mod layers;
mod net;
#[cfg(feature = "test-util")]
pub mod testing;

pub use arch::{Arch, LayerDef};
pub use checkpoint::{CheckpointError, Loaded, load, load_bytes, save};
pub use layers::{avg_pool2, forward_stages, max_pool2};
pub use net::{Init, InputNorm, Net, NetError};
