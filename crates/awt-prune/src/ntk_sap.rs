//! NTK-SAP (Wang, Li, Sun, ICLR 2023): pruning at initialisation by the NTK's spectrum, data-free
//! and weight-agnostic, from first-order gradients only.
//!
//! The kept-weight score is `|∂J/∂m| ⊙ [m ≠ 0]` with
//! `J = Σ_draws Σ_x ‖f(x; θ ⊙ m) − f(x; (θ + ε δ) ⊙ m)‖²`: for each draw a fresh initialisation `θ`
//! of the net, Gaussian directions `δ` on its weights (biases unperturbed), and Gaussian noise `x`
//! shaped like the data. `J` is a finite-difference estimate of `ε² · tr Θ` (the NTK's trace,
//! hence its name: spectrum-aware), and its mask gradient is taken at the current mask. The
//! gradient is summed over the draws before the absolute value (as the reference code accumulates
//! it), and the masks are re-selected over rounds on the exponential schedule `d^(r/R)`, like
//! SynFlow's (its reference code's example script: 20 rounds of 5 draws; its defaults: ε = 0.01, a
//! global ranking).
//!
//! With `W₁ = θ ⊙ m` and `W₂ = (θ + ε δ) ⊙ m`, `∂J/∂m = θ ⊙ ∂J/∂W₁ + (θ + ε δ) ⊙ ∂J/∂W₂`, so the two
//! weights are the variables and the masks stay constants (which lets the fused CPU ops work on the
//! kept weights only: the score is only read there).

use std::collections::BTreeMap;

use awt_base::{Stage, Weighted};
use candle_core::{DType, Tensor, Var};

use crate::alloc::{Masks, PruneError, Scores};

/// NTK-SAP's perturbation size ε (the reference code's default).
pub const NTK_SAP_EPSILON: f64 = 0.01;

/// One draw of NTK-SAP: the network freshly initialised (its stages, unmasked; an input
/// standardisation stage is left out, as the noise stands for standardised data), the directions
/// `δ` of its weights' perturbation (keyed `<layer>.weight`, the weights' shapes), and the noise
/// inputs `(n, input shape…)`.
#[derive(Clone, Debug)]
pub struct SapDraw {
    /// The fresh network's stages.
    pub stages: Vec<Stage>,
    /// `δ` per weight.
    pub directions: BTreeMap<String, Tensor>,
    /// The inputs `x`.
    pub inputs: Tensor,
}

/// The stages of `draw` in f64 with `weight(name, θ)` as each layer's weight and the layer's mask
/// from `masks`; the input standardisation left out.
fn masked_stages(
    draw: &SapDraw,
    masks: &Masks,
    weight: &mut dyn FnMut(&str, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<Vec<Stage>, PruneError> {
    let mut out = Vec::with_capacity(draw.stages.len());
    for s in draw.stages.iter().filter(|s| !matches!(s, Stage::Standardize { .. })) {
        out.push(s.clone().map_params(|p| {
            let key = format!("{}.weight", p.name);
            let mask = masks.get(&key).map(|m| m.to_dtype(DType::F64)).transpose()?;
            Ok(Weighted {
                weight: weight(&key, &p.weight.detach().to_dtype(DType::F64)?)?,
                bias: p.bias.detach().to_dtype(DType::F64)?,
                mask,
                name: p.name,
            })
        })?);
    }
    for key in masks.keys() {
        if !out.iter().filter_map(Stage::weighted).any(|p| format!("{}.weight", p.name) == *key) {
            return Err(PruneError::Invalid(format!("NTK-SAP: the draw's network has no weight `{key}`")));
        }
    }
    Ok(out)
}

/// `∂J/∂m` of one draw at `masks` (signed; every weight of `masks`, zero where it is 0).
fn draw_gradient(draw: &SapDraw, masks: &Masks, eps: f64) -> Result<Scores, PruneError> {
    // Each pass's weights are fresh variables: θ, then θ + ε δ.
    let (mut plain, mut moved) = (BTreeMap::<String, Var>::new(), BTreeMap::<String, Var>::new());
    let orig = masked_stages(draw, masks, &mut |key, theta| {
        let v = Var::from_tensor(theta)?;
        plain.insert(key.to_string(), v.clone());
        Ok(v.as_tensor().clone())
    })?;
    let pert = masked_stages(draw, masks, &mut |key, theta| {
        let Some(delta) = draw.directions.get(key) else {
            candle_core::bail!("NTK-SAP: the draw has no direction for `{key}`")
        };
        if delta.dims() != theta.dims() {
            candle_core::bail!(
                "NTK-SAP: the direction of `{key}` is {:?}, its weight {:?}",
                delta.dims(),
                theta.dims()
            );
        }
        let v = Var::from_tensor(&(theta + (delta.to_dtype(DType::F64)? * eps)?)?)?;
        moved.insert(key.to_string(), v.clone());
        Ok(v.as_tensor().clone())
    })?;
    let x = draw.inputs.detach().to_dtype(DType::F64)?;
    let diff = (awt_base::forward_stages(&orig, &x)? - awt_base::forward_stages(&pert, &x)?)?;
    let grads = diff.sqr()?.sum_all()?.backward()?;
    // θ ⊙ ∂J/∂W for one pass's variable (W = θ ⊙ m, so ∂J/∂W at the kept weights is ∂J/∂θ there).
    let part = |v: &Var| -> candle_core::Result<Tensor> {
        match grads.get(v.as_tensor()) {
            Some(g) => v.as_tensor().mul(g),
            None => v.as_tensor().zeros_like(),
        }
    };
    let mut out = Scores::new();
    for (key, m) in masks {
        let g = (part(&plain[key])? + part(&moved[key])?)?;
        out.insert(key.clone(), (g * m.to_dtype(DType::F64)?)?);
    }
    Ok(out)
}

/// NTK-SAP's scores at `masks` (f64; the weights of `masks` are the ones scored): `|Σ ∂J/∂m|` over
/// `draws` draws from `draw(j)`, zero where the mask is 0.
pub fn ntk_sap_scores(
    draw: &mut dyn FnMut(usize) -> candle_core::Result<SapDraw>,
    draws: usize,
    masks: &Masks,
    eps: f64,
) -> Result<Scores, PruneError> {
    if draws == 0 {
        return Err(PruneError::Invalid("NTK-SAP needs at least one draw per round".into()));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(PruneError::Invalid(format!("NTK-SAP's perturbation ε must be > 0, got {eps}")));
    }
    let mut sum: Option<Scores> = None;
    for j in 0..draws {
        let g = draw_gradient(&draw(j)?, masks, eps)?;
        sum = Some(match sum {
            None => g,
            Some(s) => {
                s.into_iter().map(|(k, t)| Ok((k.clone(), (t + &g[&k])?))).collect::<candle_core::Result<_>>()?
            }
        });
    }
    let sum = sum.expect("at least one draw");
    sum.into_iter().map(|(k, t)| Ok((k, t.abs()?))).collect::<candle_core::Result<_>>().map_err(PruneError::from)
}

/// NTK-SAP's masks: `rounds` rounds, each scoring [`ntk_sap_scores`] over `draws` draws
/// `draw(round, j)` (round from 0) at the current masks and re-selecting them toward `target` on the
/// exponential schedule ([`crate::Target::select_round`]: density `d^((round+1)/rounds)`, or each
/// layer toward its count); `masks` starts all ones over `weights` (their names and shapes).
pub fn ntk_sap(
    weights: &BTreeMap<String, Tensor>,
    draw: &mut dyn FnMut(usize, usize) -> candle_core::Result<SapDraw>,
    target: crate::Target,
    rounds: usize,
    draws: usize,
    eps: f64,
) -> Result<Masks, PruneError> {
    if rounds == 0 {
        return Err(PruneError::Invalid("NTK-SAP needs at least one round".into()));
    }
    let mut masks: Masks =
        weights.iter().map(|(k, w)| Ok((k.clone(), w.ones_like()?))).collect::<candle_core::Result<_>>()?;
    for r in 0..rounds {
        let scores = ntk_sap_scores(&mut |j| draw(r, j), draws, &masks, eps)?;
        let scores: Scores = scores
            .into_iter()
            .map(|(k, s)| Ok((k.clone(), s.to_dtype(weights[&k].dtype())?)))
            .collect::<candle_core::Result<_>>()?;
        masks = target.select_round(&scores, r + 1, rounds)?;
    }
    Ok(masks)
}
