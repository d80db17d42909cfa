//! [`Density`]: the fraction of a layer's weights a mask keeps, checked once when it is made.

use std::fmt;
use std::str::FromStr;

/// A setting that is out of its range, naming the setting and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    /// The setting (`density`, …).
    pub setting: &'static str,
    /// What is wrong, with the value.
    pub why: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.setting, self.why)
    }
}

impl std::error::Error for SettingError {}

/// A weight density in (0, 1]: the only way to make one is [`Density::new`] (or parsing, or
/// deserialising, which call it), so code that holds a `Density` need not check it again.
/// Prints as the `f64` it holds (`0.05`, `1`), the form run names and argv use.
#[derive(Clone, Copy, PartialEq, PartialOrd, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Density(f64);

/// As the `f64` it holds: configurations printed with `{:?}` (kept in checkpoint metadata and
/// search-state identities) read as they did when the density was a plain number.
impl fmt::Debug for Density {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Density {
    /// The dense net's density.
    pub const ONE: Density = Density(1.0);

    /// `d` if it is a density: finite, above 0, at most 1.
    pub fn new(d: f64) -> Result<Density, SettingError> {
        if d.is_finite() && d > 0.0 && d <= 1.0 {
            Ok(Density(d))
        } else {
            Err(SettingError { setting: "density", why: format!("{d} is not in (0, 1]") })
        }
    }

    /// The fraction kept.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Density {
    type Error = SettingError;
    fn try_from(d: f64) -> Result<Density, SettingError> {
        Density::new(d)
    }
}

impl From<Density> for f64 {
    fn from(d: Density) -> f64 {
        d.0
    }
}

impl fmt::Display for Density {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Density {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Density, SettingError> {
        let d =
            s.parse::<f64>().map_err(|_| SettingError { setting: "density", why: format!("`{s}` is not a number") })?;
        Density::new(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_densities_in_the_unit_interval_are_made() {
        for ok in [1e-6, 0.05, 0.5, 1.0] {
            assert_eq!(Density::new(ok).unwrap().get(), ok);
        }
        for bad in [0.0, -0.1, 1.0 + 1e-12, f64::NAN, f64::INFINITY] {
            let e = Density::new(bad).unwrap_err();
            assert!(e.to_string().starts_with("density ") && e.to_string().contains("(0, 1]"), "{e}");
        }
        assert!("x".parse::<Density>().unwrap_err().to_string().contains("`x` is not a number"));
        assert!(serde_json::from_str::<Density>("1.5").is_err());
        assert_eq!(serde_json::to_string(&Density::new(0.05).unwrap()).unwrap(), "0.05");
    }

    #[test]
    fn prints_as_its_number() {
        assert_eq!(Density::ONE.to_string(), "1");
        assert_eq!(format!("{:?}", Density::new(0.05).unwrap()), format!("{:?}", 0.05f64));
        assert_eq!(format!("{:?}", Density::ONE), "1.0");
        assert_eq!("0.02".parse::<Density>().unwrap().to_string(), "0.02");
    }
}
