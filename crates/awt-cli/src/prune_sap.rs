//! `awt prune --method ntk-sap`: NTK-SAP's draws (fresh initialisations of the net, Gaussian
//! directions on its weights, Gaussian noise inputs), all from the project's seeded generator.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use awt_base::{Rng, Staged};
use awt_nets::{Init, Net};
use awt_prune::Masks;
use awt_prune::scores::{self, SapDraw};
use candle_core::{DType, Tensor};

use clap::Args;

/// `awt prune`'s NTK-SAP flags.
#[derive(Args, Debug, Clone)]
pub(crate) struct SapArgs {
    /// NTK-SAP: rounds of scoring and re-selection (density^(r/R)); 20 as its reference code's
    /// example script runs it.
    #[arg(long, default_value_t = 20)]
    pub ntk_sap_rounds: usize,
    /// NTK-SAP: draws per round (fresh initialisation, perturbation, noise); 5 as that script runs it.
    #[arg(long, default_value_t = 5)]
    pub ntk_sap_draws: usize,
    /// NTK-SAP: noise inputs per draw, its code's 10 per class.
    #[arg(long, default_value_t = 100)]
    pub ntk_sap_inputs: usize,
    /// NTK-SAP: the weights' perturbation size ε.
    #[arg(long, default_value_t = scores::NTK_SAP_EPSILON)]
    pub ntk_sap_eps: f64,
}

/// The most noise inputs one draw may score: NTK-SAP's reference scores 10 per class (100 here).
const MAX_INPUTS: usize = 4096;

/// NTK-SAP's masks for the dense `net`: `--ntk-sap-rounds` rounds of `--ntk-sap-draws` draws, each a
/// fresh initialisation with the net's own initialiser (its checkpoint's `init`, else PyTorch's
/// default), directions `δ ~ N(0, I)` on its weights and `--ntk-sap-inputs` inputs `~ N(0, 1)`
/// (standing for standardised data); the draws of round r are `Rng::new(--seed).derive("ntk-sap")`
/// forked at `r · draws + j`.
pub(crate) fn masks(net: &Net, a: &SapArgs, seed: u64, target: awt_prune::Target) -> Result<Masks> {
    let (rounds, draws, n) = (a.ntk_sap_rounds, a.ntk_sap_draws, a.ntk_sap_inputs);
    if n == 0 || n > MAX_INPUTS {
        bail!("--ntk-sap-inputs must be in 1..={MAX_INPUTS} (NTK-SAP's reference scores 100), got {n}");
    }
    if !(a.ntk_sap_eps.is_finite() && a.ntk_sap_eps > 0.0) {
        bail!("--ntk-sap-eps must be a finite number > 0 (NTK-SAP's 0.01), got {}", a.ntk_sap_eps);
    }
    if rounds == 0 || draws == 0 {
        bail!("--ntk-sap-rounds and --ntk-sap-draws must be ≥ 1 (got {rounds} and {draws})");
    }
    let init = match net.meta.get("init") {
        Some(name) => name.parse::<Init>().map_err(|e| anyhow::anyhow!("--model: its `init` metadata: {e}"))?,
        None => Init::KaimingUniform,
    };
    let (arch, dev) = (net.arch().clone(), net.device());
    let mut shape = vec![n];
    shape.extend(arch.input_shape());
    let root = Rng::new(seed).derive("ntk-sap");
    let pb = crate::output::progress((rounds * draws) as u64, "ntk-sap");
    let mut draw = |r: usize, j: usize| -> candle_core::Result<SapDraw> {
        pb.inc(1);
        let mut rng = root.fork((r * draws + j) as u64);
        let fresh = Net::init(&arch, init, rng.next_u64(), DType::F64, &dev).map_err(candle_core::Error::wrap)?;
        let mut directions = BTreeMap::new();
        for (k, w) in fresh.weights() {
            let mut g = rng.derive(k);
            let v: Vec<f64> = (0..w.elem_count()).map(|_| g.normal()).collect();
            directions.insert(k.clone(), Tensor::from_vec(v, w.shape(), &dev)?);
        }
        let mut g = rng.derive("inputs");
        let x: Vec<f64> = (0..shape.iter().product()).map(|_| g.normal()).collect();
        Ok(SapDraw { stages: fresh.stages(), directions, inputs: Tensor::from_vec(x, shape.as_slice(), &dev)? })
    };
    let weights: BTreeMap<String, Tensor> = net.weights().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let masks = scores::ntk_sap(&weights, &mut draw, target, rounds, draws, a.ntk_sap_eps)?;
    pb.finish_and_clear();
    Ok(masks)
}
