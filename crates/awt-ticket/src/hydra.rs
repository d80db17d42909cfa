//! HYDRA (Sehwag et al., NeurIPS 2020, "HYDRA: Pruning adversarially robust neural networks"):
//! starting from an adversarially pretrained network, optimise per-weight importance scores under the
//! robust (PGD-AT) loss with the weights frozen, keep the per-layer top-k scores, then fine-tune.
//!
//! As HYDRA's code (inspire-group/hydra: `GetSubnet`, `initialize_scaled_score`, its SGD): the
//! scores start at `sqrt(6 / fan_in) · w / max|w|` per layer; the forward pass uses `w ⊙ m`,
//! `m = topk(|s|)` per layer, re-selected after every step; the scores get the straight-through
//! gradient through the absolute value, `∂L/∂s = (∂L/∂(w ⊙ m) ⊙ w) · sign(s)`, written as
//! `m + |s| − stopgrad(|s|)`; SGD with momentum 0.9 and weight decay 1e-4 on the scores, at its
//! per-epoch cosine learning rate ([`Schedule::HydraCosine`], its `e − 1` phase included).
//! `tests/hydra.rs` holds this against a PyTorch implementation of those definitions. Training
//! reuses `awt-train` unchanged: the scores are the trained parameters and the scored network is
//! just another `Classifier`.

use awt_runs::Density;
use std::cell::RefCell;
use std::collections::BTreeMap;

use awt_base::{Classifier, Stage, Staged, Weighted};
use awt_data::Split;
use awt_nets::Net;
use awt_prune::{Allocation, select_keeping};
use awt_train::{
    EpochMetrics, Hooks, Objective, OptimizerConfig, RunFolder, Schedule, TrainConfig, TrainError, ValidTrainConfig,
};
use candle_core::{Tensor, Var};

use crate::error::SearchError;

/// A frozen network whose weight masks come from trainable scores.
struct Scored<'a> {
    net: &'a Net,
    scores: BTreeMap<String, Var>,
    density: Density,
    keep_dense: &'a [String],
    masks: RefCell<BTreeMap<String, Tensor>>,
}

impl Scored<'_> {
    /// The masks: per layer the top-k of the scores' absolute values (HYDRA's `GetSubnet`).
    fn refresh(&self) -> Result<(), SearchError> {
        let s: BTreeMap<String, Tensor> = self
            .scores
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().abs()?)))
            .collect::<candle_core::Result<_>>()?;
        *self.masks.borrow_mut() = select_keeping(&s, self.density, Allocation::Uniform, self.keep_dense)?;
        Ok(())
    }

    fn stages(&self) -> candle_core::Result<Vec<Stage>> {
        let masks = self.masks.borrow();
        self.net
            .stages()
            .into_iter()
            .map(|s| {
                s.map_params(|p| {
                    let k = format!("{}.weight", p.name);
                    let mask = Some(self.st_mask(&k, &masks[&k])?);
                    Ok(Weighted { weight: p.weight.detach(), bias: p.bias.detach(), mask, name: p.name })
                })
            })
            .collect()
    }

    /// `m + |s| − stopgrad(|s|)`: the value of the 0/1 mask, the gradient of `|s|` (so `s` gets
    /// it with its sign).
    fn st_mask(&self, k: &str, m: &Tensor) -> candle_core::Result<Tensor> {
        let s = self.scores[k].as_tensor().abs()?;
        m + (&s - s.detach())?
    }
}

impl Classifier for Scored<'_> {
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut shape = vec![x.dim(0)?];
        shape.extend(self.net.arch().input_shape());
        awt_base::forward_stages(&self.stages()?, &x.reshape(shape.as_slice())?)
    }
}

struct Refresh<'a, 'b>(&'b Scored<'a>);
impl Hooks for Refresh<'_, '_> {
    fn after_step(&mut self, _epoch: usize, _global: u64) -> Result<(), TrainError> {
        self.0.refresh().map_err(TrainError::hook)
    }
    fn after_epoch(&mut self, _m: &mut EpochMetrics) -> Result<(), TrainError> {
        Ok(())
    }
}

/// HYDRA's score optimisation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HydraConfig {
    /// Target density per layer.
    pub density: Density,
    /// Epochs of score optimisation.
    pub epochs: usize,
    /// Score learning rate (SGD with momentum 0.9 and weight decay [`HYDRA_WEIGHT_DECAY`], HYDRA's
    /// per-epoch cosine schedule [`Schedule::HydraCosine`]; HYDRA uses 0.1).
    pub lr: f64,
    /// Robust loss: PGD radius, steps and step size.
    pub eps: f64,
    /// PGD steps.
    pub steps: usize,
    /// PGD step size.
    pub step_size: f64,
    /// Batch size.
    pub batch: usize,
    /// Seed.
    pub seed: u64,
    /// Layers kept whole, counted in the density (e.g. the output layer).
    pub keep_dense: Vec<String>,
}

/// HYDRA's weight decay on the scores (its `--wd` default, which its pruning commands keep).
pub const HYDRA_WEIGHT_DECAY: f64 = 1e-4;

/// HYDRA's scaled initialisation of the scores (`initialize_scaled_score`): per layer
/// `sqrt(6 / fan_in) · w / max|w|`, so that `|s|` ranks as `|w|` and starts at the scale of a
/// Kaiming-uniform initialisation.
pub fn scaled_scores(net: &Net) -> Result<BTreeMap<String, Var>, SearchError> {
    let mut scores = BTreeMap::new();
    for (k, w) in net.weights() {
        let w = w.as_tensor().detach();
        let fan_in: usize = w.dims()[1..].iter().product();
        let mx = w.abs()?.flatten_all()?.max(0)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?.max(1e-12);
        scores.insert(k.clone(), Var::from_tensor(&(w * ((6.0 / fan_in as f64).sqrt() / mx))?)?);
    }
    Ok(scores)
}

/// HYDRA's optimiser of the scores: SGD, momentum 0.9, weight decay [`HYDRA_WEIGHT_DECAY`].
pub const HYDRA_OPTIMIZER: OptimizerConfig =
    OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: HYDRA_WEIGHT_DECAY };

/// HYDRA's score optimisation with the weights of `frozen` fixed: trains `scores` (updated in
/// place) under `tcfg`'s objective, the masks the per-layer top-k of `|scores|` at `density` (the
/// layers in `keep_dense` kept whole) re-selected after every step, and returns the final masks.
/// [`hydra`] runs it under the PGD-AT loss with HYDRA's optimiser and its per-epoch cosine schedule.
#[allow(clippy::too_many_arguments)]
pub fn optimise_scores(
    frozen: &Net,
    scores: &BTreeMap<String, Var>,
    density: Density,
    keep_dense: &[String],
    train: &Split,
    eval: &Split,
    tcfg: &ValidTrainConfig,
    run: &RunFolder,
) -> Result<BTreeMap<String, Tensor>, SearchError> {
    let scored =
        Scored { net: frozen, scores: scores.clone(), density, keep_dense, masks: RefCell::new(BTreeMap::new()) };
    scored.refresh()?;
    let vars: Vec<(String, Var)> = scores.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    awt_train::train(&scored, vars, train, eval, tcfg, run, &mut Refresh(&scored))?;
    scored.refresh()?;
    let masks = scored.masks.borrow().clone();
    Ok(masks)
}

/// Runs HYDRA's pruning stage on an adversarially `pretrained` network; returns it masked by the
/// final top-k scores (weights = pretrained ⊙ mask), ready for fine-tuning. `work` receives the
/// score run's metrics and checkpoints.
pub fn hydra(
    pretrained: &Net,
    train: &Split,
    eval: &Split,
    cfg: &HydraConfig,
    work: &std::path::Path,
) -> Result<Net, SearchError> {
    if !pretrained.masks().is_empty() {
        return Err(SearchError::Invalid("HYDRA starts from a dense pretrained network (this one has masks)".into()));
    }
    if cfg.epochs < 2 {
        // Schedule::HydraCosine at epoch 0 of 1 is lr·½(1 + cos(−π)) = 0: not one score would move.
        return Err(SearchError::Invalid(format!(
            "HYDRA's score optimisation needs at least 2 epochs (got {}): its per-epoch cosine schedule, \
             lr·½(1 + cos(π(e − 1)/E)) as in HYDRA's code, is 0 at the only epoch of 1, so the scores would stay \
             at their magnitude initialisation",
            cfg.epochs
        )));
    }
    let frozen = pretrained.deep_clone()?;
    let scores = scaled_scores(&frozen)?;
    let tcfg = TrainConfig {
        epochs: cfg.epochs,
        batch_size: cfg.batch,
        lr: cfg.lr,
        optimizer: HYDRA_OPTIMIZER,
        schedule: Schedule::HydraCosine { epochs: cfg.epochs },
        objective: Objective::Pgd { eps: cfg.eps, steps: cfg.steps, step_size: cfg.step_size },
        seed: cfg.seed,
        eval_n: 0,
        eval_eps: cfg.eps,
        eval_steps: 0,
    }
    .validate()?;
    // The work folder's config.toml, as TOML like every run folder's (not a debug dump).
    let config = format!(
        "stage = \"hydra-scores\"\nschedule = \"hydra-cosine\"\ndensity = {}\nepochs = {}\nlr = {}\neps = {}\nsteps = {}\nstep_size = {}\nbatch = {}\nseed = {}\nkeep_dense = [{}]\n",
        cfg.density,
        cfg.epochs,
        cfg.lr,
        cfg.eps,
        cfg.steps,
        cfg.step_size,
        cfg.batch,
        cfg.seed,
        cfg.keep_dense.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
    );
    let run = RunFolder::open(work, &config, &config, false)?;
    let masks = optimise_scores(&frozen, &scores, cfg.density, &cfg.keep_dense, train, eval, &tcfg, &run)?;
    let mut out = frozen;
    for (k, m) in masks.iter() {
        out.set_mask(k, m)?;
    }
    out.apply_masks()?;
    out.meta.insert("method".into(), "hydra".into());
    out.meta.insert("density".into(), cfg.density.to_string());
    out.meta.insert("hydra".into(), format!("{cfg:?}"));
    Ok(out)
}
