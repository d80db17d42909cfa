//! Datasets for awt: strict parsers, a registry with pinned checksums, and seeded batching.
//!
//! - [`idx`]: the IDX format of MNIST and Fashion-MNIST (raw or gzip), [`cifar`]: CIFAR-10's binary
//!   batches, [`hf`]: the Hugging Face hub's parquet files of PNG images. Every parser rejects wrong
//!   magic, wrong element types, truncated or trailing bytes, count mismatches and labels ≥ 10 with an
//!   error that names the file, and never allocates more than the file can hold.
//! - [`registry`]: named datasets, where to find them (`--data-dir`/`AWT_DATA_DIR`,
//!   `/usr/share/datasets/<name>`, the Hugging Face cache, a hub download unless offline) and their
//!   SHA-256 sums. `fashion-mnist-mini` is embedded in the crate, so everything runs with zero setup.
//! - [`Split`]: images as bytes, turned into `f32` NCHW tensors in [0, 1] batch by batch, and
//!   [`epoch_order`] for seeded shuffles.
//!
//! Needs only candle and `awt-base`. Example:
//!
//! ```
//! let ds = awt_data::load("fashion-mnist-mini", &awt_data::LoadOptions::offline_embedded_only()).unwrap();
//! let (x, y) = ds.test.batch(&[0, 1, 2], &candle_core::Device::Cpu).unwrap();
//! assert_eq!(x.dims(), &[3, 1, 28, 28]);
//! assert_eq!(y.dims(), &[3]);
//! ```

pub mod cifar;
mod error;
mod footer;
pub mod hf;
pub mod idx;
mod load;
pub mod registry;
mod split;
pub mod synthetic;

pub use error::DataError;
pub use load::{Dataset, FileCheck, LoadOptions, Location, Provenance, load, locate};
pub use registry::REGISTRY;
pub use split::{Split, batches, epoch_order};
