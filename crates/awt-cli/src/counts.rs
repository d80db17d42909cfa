//! `--layer-densities-from`: the number of weights each layer of another masked checkpoint keeps —
//! an allocation over layers that a search (`awt ticket`) or a score (`awt prune`) is then held to.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use awt_nets::{Arch, Net};
use awt_runs::Density;
use candle_core::{DType, Device};

/// The weights each layer of `path`'s masks keeps (`--layer-densities-from`), checked against `arch`.
pub(crate) fn layer_counts(path: &Path, arch: &Arch, dev: &Device) -> Result<BTreeMap<String, usize>> {
    let flag = format!("--layer-densities-from {}", path.display());
    let net = awt_nets::load(path, Some(arch), DType::F32, dev).with_context(|| flag.clone())?.net;
    if net.arch() != arch {
        bail!("{flag}: it is a {} network, the --model a {}", net.arch(), arch);
    }
    let missing: Vec<String> = net.weight_names().into_iter().filter(|k| !net.masks().contains_key(k)).collect();
    if !missing.is_empty() {
        bail!("{flag}: it has no mask for {} (a masked checkpoint is needed, e.g. `awt prune`'s)", missing.join(", "));
    }
    awt_prune::kept_counts(net.masks()).with_context(|| flag)
}

/// [`layer_counts`] of `path` for `net`, checked to keep `density` of its weights in all and the
/// layers named in `dense` whole.
pub(crate) fn fitting(path: &Path, net: &Net, density: Density, dense: &[String]) -> Result<BTreeMap<String, usize>> {
    let counts = layer_counts(path, net.arch(), &net.device())?;
    let sizes = net.weights().map(|(k, w)| (k.clone(), w.as_tensor().elem_count())).collect();
    awt_prune::check_counts(&sizes, &counts, density, dense)
        .with_context(|| format!("--layer-densities-from {}", path.display()))?;
    Ok(counts)
}
