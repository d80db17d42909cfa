//! Pruning scores at initialisation. Higher score = more important = kept.

use std::collections::BTreeMap;

use awt_base::{Rng, Stage, Weighted};
use candle_core::{DType, Device, Tensor, Var};

pub use crate::alloc::Scores;
use crate::alloc::{Masks, PruneError};
pub use crate::ntk_sap::{NTK_SAP_EPSILON, SapDraw, ntk_sap, ntk_sap_scores};

/// |w|.
pub fn magnitude(weights: &BTreeMap<String, Tensor>) -> Result<Scores, PruneError> {
    weights.iter().map(|(k, w)| Ok((k.clone(), w.abs()?))).collect()
}

/// Uniform random scores from `Rng::new(seed).derive(name)` (independent of layer order).
pub fn random(weights: &BTreeMap<String, Tensor>, seed: u64) -> Result<Scores, PruneError> {
    let root = Rng::new(seed).derive("random-prune");
    weights
        .iter()
        .map(|(k, w)| {
            let mut r = root.derive(k);
            let v: Vec<f64> = (0..w.elem_count()).map(|_| r.uniform()).collect();
            Ok((k.clone(), Tensor::from_vec(v, w.shape(), w.device())?))
        })
        .collect()
}

fn grads_of(loss: &Tensor, vars: &BTreeMap<String, Var>) -> Result<BTreeMap<String, Tensor>, PruneError> {
    let g = loss.backward()?;
    vars.iter()
        .map(|(k, v)| {
            let t = match g.get(v.as_tensor()) {
                Some(t) => t.clone(),
                None => v.as_tensor().zeros_like()?,
            };
            Ok((k.clone(), t))
        })
        .collect()
}

/// SNIP (Lee et al. 2019): |w ⊙ ∂L/∂w| for the scalar `loss()` computed from the current `vars`.
pub fn snip(
    loss: &dyn Fn() -> candle_core::Result<Tensor>,
    vars: &BTreeMap<String, Var>,
) -> Result<Scores, PruneError> {
    let g = grads_of(&loss()?, vars)?;
    vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().mul(&g[k])?.abs()?))).collect()
}

/// GraSP's temperature: its paper's code (and Synaptic-Flow's) scores the cross-entropy of the
/// logits divided by T = 200, which changes the Hessian-gradient product's direction, not only its
/// scale. Pass [`grasp`] that loss.
pub const GRASP_TEMPERATURE: f64 = 200.0;

/// GraSP (Wang et al. 2020): keep-score `w ⊙ (H g)`, i.e. pruning the highest `−w ⊙ H g` as the
/// paper does, for the scalar `loss()`: GraSP's is the mean cross-entropy of the logits divided by
/// [`GRASP_TEMPERATURE`] (`awt prune --method grasp` computes it so, in f64). candle has no double
/// backward, so the Hessian-gradient product is a central finite difference of gradients along the
/// unit gradient direction, `H g ≈ ‖g‖ · (∇L(w + h ĝ) − ∇L(w − h ĝ)) / (2h)`, exact for quadratics
/// up to rounding. A ReLU or max-pool kink crossed between `w ± h ĝ` puts a jump into that
/// difference which the exact product (PyTorch's double backward) does not have, and at GraSP's
/// temperature the smooth part is small beside it (a step of 1e-3 gave scores off by a factor of
/// 20 on LeNet-300-100). So the step is halved, from `h`, until two successive estimates agree
/// within 1e-6 of their norm over all weights (1e-2 below f64, where rounding allows no better),
/// at most 40 times; an error names the step where they never do. Against PyTorch's exact product
/// (`tests/pruners.rs`, f64, from 1e-5) the scores agree to about 1e-10.
pub fn grasp(
    loss: &dyn Fn() -> candle_core::Result<Tensor>,
    vars: &BTreeMap<String, Var>,
    h: f64,
) -> Result<Scores, PruneError> {
    if !(h.is_finite() && h > 0.0) {
        return Err(PruneError::Invalid(format!("GraSP finite-difference step must be > 0, got {h}")));
    }
    let g = grads_of(&loss()?, vars)?;
    let sq = |t: &BTreeMap<String, Tensor>| -> candle_core::Result<f64> {
        t.values().map(|t| t.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()).sum()
    };
    let norm = sq(&g)?.sqrt();
    if norm == 0.0 {
        return Err(PruneError::Invalid(
            "GraSP: the loss gradient is zero, the Hessian-gradient product is undefined".into(),
        ));
    }
    let originals: BTreeMap<String, Tensor> =
        vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect::<candle_core::Result<_>>()?;
    let shifted = |step: f64| -> Result<BTreeMap<String, Tensor>, PruneError> {
        for (k, v) in vars {
            v.set(&(&originals[k] + (&g[k] * (step / norm))?)?)?;
        }
        let out = grads_of(&loss()?, vars);
        for (k, v) in vars {
            v.set(&originals[k])?;
        }
        out
    };
    let hg = |h: f64| -> Result<BTreeMap<String, Tensor>, PruneError> {
        let (gp, gm) = (shifted(h)?, shifted(-h)?);
        vars.keys().map(|k| Ok((k.clone(), ((&gp[k] - &gm[k])? * (norm / (2.0 * h)))?))).collect()
    };
    let f64_vars = vars.values().all(|v| v.dtype() == DType::F64);
    let tol = if f64_vars { 1e-6 } else { 1e-2 };
    let (mut step, mut last) = (h, hg(h)?);
    let settled = loop {
        if step < h * 0.5f64.powi(40) {
            return Err(PruneError::Invalid(format!(
                "GraSP: the finite-difference Hessian-gradient product did not settle between steps {h:e} and {step:e} (compute it in f64)"
            )));
        }
        step /= 2.0;
        let next = hg(step)?;
        let diff: BTreeMap<String, Tensor> =
            next.iter().map(|(k, t)| Ok((k.clone(), (t - &last[k])?))).collect::<candle_core::Result<_>>()?;
        if sq(&diff)?.sqrt() <= tol * sq(&next)?.sqrt() {
            break next;
        }
        last = next;
    };
    vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().mul(&settled[k])?))).collect()
}

/// SynFlow (Tanaka et al. 2020): data-free and iterative. Each of `rounds` rounds scores
/// `|w| ⊙ ∂R/∂|w|` with `R = Σ f(1; |w| ⊙ m)` (all-ones input, absolute weights and biases, current
/// masks, in f64), and re-selects masks toward `target` on the exponential schedule
/// ([`crate::Target::select_round`]: density `d^(r/rounds)`, or each layer toward its count). The
/// all-ones input enters the first layer, as in SynFlow's code, where inputs are standardised by
/// the data pipeline: a `Standardize` stage of the net is left out (through it the first layer
/// would see `(1 − μ)/σ`, which weighs the absolute biases differently against the weights).
pub fn synflow(
    stages: &[Stage],
    input_shape: &[usize],
    target: crate::Target,
    rounds: usize,
) -> Result<Masks, PruneError> {
    if rounds == 0 {
        return Err(PruneError::Invalid("SynFlow needs at least one round".into()));
    }
    // On the device of the network's weights.
    let dev = stages.iter().find_map(Stage::weighted).map_or(Device::Cpu, |p| p.weight.device().clone());
    // Absolute weights as fresh f64 variables; biases as constants (SynFlow scores weights only).
    let mut vars: BTreeMap<String, Var> = BTreeMap::new();
    for s in stages {
        if let Some(p) = s.weighted() {
            vars.insert(
                format!("{}.weight", p.name),
                Var::from_tensor(&p.weight.detach().to_dtype(DType::F64)?.abs()?)?,
            );
        }
    }
    let mut masks: Masks =
        vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().ones_like()?))).collect::<candle_core::Result<_>>()?;
    let mut shape = vec![1];
    shape.extend_from_slice(input_shape);
    let ones = Tensor::ones(shape.as_slice(), DType::F64, &dev)?;
    for r in 1..=rounds {
        let linear: Vec<Stage> = stages
            .iter()
            .filter(|s| !matches!(s, Stage::Standardize { .. }))
            .map(|s| {
                s.clone().map_params(|p| {
                    let k = format!("{}.weight", p.name);
                    Ok(Weighted {
                        weight: vars[&k].as_tensor().clone(),
                        bias: p.bias.detach().to_dtype(DType::F64)?.abs()?,
                        mask: Some(masks[&k].clone()),
                        name: p.name,
                    })
                })
            })
            .collect::<candle_core::Result<_>>()?;
        let rsum = awt_base::forward_stages(&linear, &ones)?.sum_all()?;
        let g = grads_of(&rsum, &vars)?;
        let scores: Scores = vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().mul(&g[k])?.mul(&masks[k])?)))
            .collect::<candle_core::Result<_>>()?;
        masks = target.select_round(&scores, r, rounds)?;
    }
    Ok(masks)
}
