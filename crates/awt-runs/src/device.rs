//! [`DeviceSpec`]: where an `awt` command computes (`--device`), as a preset and a manifest write it.

use std::fmt;
use std::str::FromStr;

use crate::SettingError;

/// `cpu` (the default), `cuda` / `cuda:N` (candle's CUDA backend, device N), or `auto` (CUDA
/// device 0 when the binary has CUDA and a GPU is present, the CPU otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU, with the hand-written kernels.
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
    /// CUDA device 0 if there is one, else the CPU.
    Auto,
}

impl FromStr for DeviceSpec {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<DeviceSpec, SettingError> {
        let bad = || SettingError {
            setting: "device",
            why: format!("`{s}` is not one of cpu, cuda, cuda:N (N = 0, 1, …), auto"),
        };
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            "auto" => Ok(DeviceSpec::Auto),
            _ => match s.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Auto => f.write_str("auto"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = SettingError;
    fn try_from(s: String) -> Result<DeviceSpec, SettingError> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_print_and_parse_back_and_bad_ones_are_named() {
        for d in [DeviceSpec::Cpu, DeviceSpec::Cuda(0), DeviceSpec::Cuda(3), DeviceSpec::Auto] {
            assert_eq!(d.to_string().parse::<DeviceSpec>().unwrap(), d);
        }
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.starts_with("device ") && e.contains("cuda:N"), "{e}");
        }
    }
}
