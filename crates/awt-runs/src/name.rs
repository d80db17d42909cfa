//! A run's name, `<arch>-<variant>-d<density>-s<seed>`, printed and parsed in one place, and
//! [`fnv`], the stable hash that tells two settings of the same name apart.

use std::fmt;
use std::str::FromStr;

use crate::{Density, Method};

/// A method with its ablation, if any: `awt`, `awt-ker1e-3`, `dense-cos20`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variant {
    /// The method.
    pub method: Method,
    /// The ablation's name (`ker1e-3`); `None` for the plain method.
    pub ablation: Option<String>,
}

impl Variant {
    /// The plain method.
    pub fn plain(method: Method) -> Variant {
        Variant { method, ablation: None }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ablation {
            Some(a) => write!(f, "{}-{a}", self.method),
            None => f.write_str(self.method.name()),
        }
    }
}

/// A string that is not a run name or variant, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadName {
    /// The string.
    pub name: String,
    /// What it lacks.
    pub why: &'static str,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a run name: {}", self.name, self.why)
    }
}

impl std::error::Error for BadName {}

impl FromStr for Variant {
    type Err = BadName;
    /// A method's name, alone or followed by `-<ablation>` (the longest method name that fits).
    fn from_str(s: &str) -> Result<Variant, BadName> {
        let bad = |why| BadName { name: s.to_string(), why };
        let method = Method::ALL
            .into_iter()
            .filter(|m| s == m.name() || s.strip_prefix(m.name()).is_some_and(|r| r.len() > 1 && r.starts_with('-')))
            .max_by_key(|m| m.name().len())
            .ok_or_else(|| bad("it does not begin with a method's name"))?;
        let ablation = s.strip_prefix(method.name()).and_then(|r| r.strip_prefix('-')).map(String::from);
        Ok(Variant { method, ablation })
    }
}

/// `<arch>-<variant>-d<density>-s<seed>`: what a run is, as its folder and record are named.
#[derive(Clone, Debug, PartialEq)]
pub struct RunName {
    /// The architecture (`lenet-300-100`).
    pub arch: String,
    /// The method with its ablation.
    pub variant: Variant,
    /// The density (1 for the dense net).
    pub density: Density,
    /// The seed.
    pub seed: u64,
}

impl fmt::Display for RunName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-d{}-s{}", self.arch, self.variant, self.density, self.seed)
    }
}

impl FromStr for RunName {
    type Err = BadName;
    /// The architecture is what comes before the first `-<method>` that leaves a variant (no
    /// architecture name has a method's name as a `-`-separated part).
    fn from_str(s: &str) -> Result<RunName, BadName> {
        let bad = |why| BadName { name: s.to_string(), why };
        let (rest, seed) = s.rsplit_once("-s").ok_or_else(|| bad("it lacks `-s<seed>`"))?;
        let seed = seed.parse().map_err(|_| bad("its seed is not a whole number"))?;
        let (head, density) = rest.rsplit_once("-d").ok_or_else(|| bad("it lacks `-d<density>`"))?;
        let density = density.parse().map_err(|_| bad("its density is not in (0, 1]"))?;
        let (arch, variant) = head
            .match_indices('-')
            .find_map(|(i, _)| Some((&head[..i], head[i + 1..].parse::<Variant>().ok()?)))
            .ok_or_else(|| bad("it has no `-<method>` after an architecture"))?;
        Ok(RunName { arch: arch.to_string(), variant, density, seed })
    }
}

/// FNV-1a, 64 bits, as 16 hex digits: stable across Rust versions (unlike `DefaultHasher`).
pub fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}

/// The variant part of `name` for a run of `arch`: the name without `<arch>-` and `-d…` (the
/// name itself where it does not have that form).
pub fn variant_in<'a>(name: &'a str, arch: &str) -> &'a str {
    let name = name.strip_prefix(arch).and_then(|n| n.strip_prefix('-')).unwrap_or(name);
    name.rfind("-d").map_or(name, |i| &name[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            "lenet-300-100-dense-d1-s0",
            "lenet-300-100-imp-at-d0.05-s3",
            "lenet5-caffe-awt-ker1e-3-d0.02-s100",
            "conv4-dense-cos20-d1-s1",
            "mlp-3-2-synflow-d0.5-s7",
        ] {
            let n: RunName = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        let n: RunName = "lenet-300-100-imp-at-d0.05-s3".parse().unwrap();
        assert_eq!((n.arch.as_str(), n.variant, n.seed), ("lenet-300-100", Variant::plain(Method::ImpAt), 3));
    }

    #[test]
    fn bad_names_say_what_they_lack() {
        for (s, why) in [
            ("lenet-300-100-awt-d0.05", "-s<seed>"),
            ("lenet-300-100-awt-d0.05-sx", "seed"),
            ("lenet-300-100-awt-s1", "-d<density>"),
            ("lenet-300-100-awt-d2-s1", "density"),
            ("lenet-300-100-lth-d0.1-s1", "method"),
        ] {
            let e = s.parse::<RunName>().unwrap_err().to_string();
            assert!(e.contains(s) && e.contains(why), "{s}: {e}");
        }
        assert!("awt-".parse::<Variant>().is_err() && "awtx".parse::<Variant>().is_err());
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv(""), "cbf29ce484222325");
        assert_eq!(fnv("a"), "af63dc4c8601ec8c");
    }
}
