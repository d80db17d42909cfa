//! The run contract between the `awt` binary and `cargo xtask`, in one place and without candle:
//!
//! - [`layout`]: the names of the files a run folder holds (each spelled once);
//! - [`records`]: the records the binary writes and xtask reads back (evaluation, mask report,
//!   manifest, the per-step and per-epoch lines), with serde field order equal to the bytes already
//!   committed under `results/`;
//! - [`Method`]: the pruning methods as a type, with the properties the pipeline branches on;
//! - [`RunName`] / [`Variant`]: a run's name `<arch>-<variant>-d<density>-s<seed>`, printed and
//!   parsed; [`fnv`], the stable hash of a run's settings;
//! - [`Density`]: a weight density, checked once when it is made; [`DeviceSpec`]: `--device`;
//! - [`lock`]: the one exclusive lock every writer of a run folder or output takes;
//! - [`reads`]: which flags only some choices of a command read (refused by the binary when given
//!   to another, left out by xtask's command builders);
//! - [`settings`]: each command's settings as a preset writes them, and the command lines they give
//!   (built with [`argv::Argv`]): every flag spelled once.
//!
//! ```
//! use awt_runs::{Density, Method, RunName};
//! let n: RunName = "lenet-300-100-awt-ker1e-3-d0.05-s100".parse().unwrap();
//! assert_eq!((n.arch.as_str(), n.variant.method, n.density, n.seed), ("lenet-300-100", Method::Awt, Density::new(0.05).unwrap(), 100));
//! assert_eq!(n.variant.to_string(), "awt-ker1e-3");
//! assert_eq!(n.to_string(), "lenet-300-100-awt-ker1e-3-d0.05-s100");
//! ```

pub mod argv;
mod density;
mod device;
pub mod layout;
pub mod lock;
mod method;
mod name;
pub mod reads;
pub mod records;
pub mod settings;

pub use density::{Density, SettingError};
pub use device::DeviceSpec;
pub use method::{Method, TicketRecipe, UnknownMethod};
pub use name::{BadName, RunName, Variant, fnv, variant_in};
