//! The search loop.

use std::collections::BTreeMap;

use awt_attack::{LossKind, Norm, Pgd};
use awt_base::{Rng, Staged};
use awt_data::{Split, epoch_order};
use awt_nets::Net;
use awt_ntk::{Kind, metrics, structured};
use awt_prune::{Allocation, select};
use awt_train::{Optimizer, OptimizerConfig};
use candle_core::{DType, Device, Module, Tensor, Var};

/// Which search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Neural Tangent Transfer: kernel and output matching on clean inputs.
    Ntt,
    /// Adversarial winning tickets: the same on adversarial inputs.
    Awt,
}

/// Whose adversarial examples the AWT loss uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvSource {
    /// PGD against the (fixed) dense teacher: constants of the batch (default).
    Teacher,
    /// PGD against the current student.
    Student,
    /// Half the batch from each.
    Both,
}

/// Which inputs enter the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputMix {
    /// Adversarial inputs only (default for AWT).
    Adversarial,
    /// Clean and adversarial inputs concatenated.
    CleanAndAdversarial,
}

/// Which weights the ticket keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFrom {
    /// m ⊙ θ_s, the transferred student weights (default).
    Transferred,
    /// m ⊙ θ_T, rewound to the teacher's initialisation.
    Rewind,
}

/// Every option of the search (method.md's defaults in [`SearchConfig::defaults`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SearchConfig {
    /// NTT or AWT.
    pub method: Method,
    /// Target density per layer.
    pub density: f64,
    /// Optimiser steps.
    pub steps: usize,
    /// Minibatch size (split into two halves for the kernel).
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// λ_ker.
    pub lambda_ker: f64,
    /// λ_l2.
    pub lambda_l2: f64,
    /// Re-select the mask every F steps (0: never).
    pub mask_every: usize,
    /// ℓ∞ radius of the adversarial inputs.
    pub eps: f64,
    /// PGD steps.
    pub attack_steps: usize,
    /// PGD step size.
    pub attack_step_size: f64,
    /// Whose adversarial examples.
    pub adv_source: AdvSource,
    /// Which inputs.
    pub inputs: InputMix,
    /// Which weights the ticket keeps.
    pub weights: WeightsFrom,
    /// Seed of shuffles and attack starts.
    pub seed: u64,
}

impl SearchConfig {
    /// method.md's defaults for `method` at `density` (MNIST-size MLP settings of NTT's code).
    pub fn defaults(method: Method, density: f64) -> SearchConfig {
        SearchConfig {
            method,
            density,
            steps: 1000,
            batch: 64,
            lr: 5e-4,
            lambda_ker: 1e-3,
            lambda_l2: 1e-4,
            mask_every: 100,
            eps: 0.1,
            attack_steps: 10,
            attack_step_size: 0.025,
            adv_source: AdvSource::Teacher,
            inputs: InputMix::Adversarial,
            weights: WeightsFrom::Transferred,
            seed: 0,
        }
    }

    fn check(&self) -> Result<(), SearchError> {
        let bad = |s: String| Err(SearchError::Invalid(s));
        if !(self.density > 0.0 && self.density <= 1.0) {
            return bad(format!("density must be in (0, 1], got {}", self.density));
        }
        if self.steps == 0 {
            return bad("steps must be ≥ 1".into());
        }
        if self.batch < 2 {
            return bad(format!("batch must be ≥ 2 (it is split in two halves), got {}", self.batch));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be > 0, got {}", self.lr));
        }
        if !(self.lambda_ker.is_finite()
            && self.lambda_ker >= 0.0
            && self.lambda_l2.is_finite()
            && self.lambda_l2 >= 0.0)
        {
            return bad("λ_ker and λ_l2 must be finite and ≥ 0".into());
        }
        if self.method == Method::Awt
            && !(self.eps.is_finite()
                && self.eps >= 0.0
                && self.attack_step_size.is_finite()
                && self.attack_step_size > 0.0)
        {
            return bad("AWT needs a finite eps ≥ 0 and a finite attack step size > 0".into());
        }
        if self.method == Method::Awt && self.attack_steps == 0 {
            return bad("AWT needs attack steps ≥ 1 (its inputs are PGD examples)".into());
        }
        Ok(())
    }
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A setting that cannot work, named.
    #[error("{0}")]
    Invalid(String),
    /// The loss became NaN or infinite.
    #[error("search diverged at step {step}: non-finite loss {loss}")]
    Diverged {
        /// Step.
        step: usize,
        /// Loss.
        loss: f64,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Other crates' errors.
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> SearchError {
    SearchError::Other(e.to_string())
}

/// One step of the search log.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchLog {
    /// Step (0-based).
    pub step: usize,
    /// Total loss.
    pub loss: f64,
    /// λ_ker · kernel MSE.
    pub kernel_term: f64,
    /// Output MSE.
    pub output_term: f64,
    /// (λ_l2/d) Σ‖m⊙W‖².
    pub l2_term: f64,
    /// ‖Θ_s − Θ_T‖/‖Θ_T‖ on this batch.
    pub kernel_distance: f64,
    /// ‖f_s − f_T‖/‖f_T‖ on this batch.
    pub output_distance: f64,
    /// Weights whose mask bit changed at this step (0 except at re-selections).
    pub mask_changes: usize,
}

impl SearchLog {
    /// One JSON line.
    pub fn json(&self) -> String {
        format!(
            "{{\"step\":{},\"loss\":{},\"kernel_term\":{},\"output_term\":{},\"l2_term\":{},\"kernel_distance\":{},\"output_distance\":{},\"mask_changes\":{}}}",
            self.step,
            self.loss,
            self.kernel_term,
            self.output_term,
            self.l2_term,
            self.kernel_distance,
            self.output_distance,
            self.mask_changes
        )
    }
}

/// The result: a network holding the ticket's masks and weights, and the log.
#[derive(Debug)]
pub struct Ticket {
    /// Masked network (weights already multiplied by the masks), metadata filled in.
    pub net: Net,
    /// One entry per step.
    pub log: Vec<SearchLog>,
}

fn layerwise_magnitude(net: &Net, density: f64) -> Result<BTreeMap<String, Tensor>, SearchError> {
    let w: BTreeMap<String, Tensor> = net
        .weight_names()
        .into_iter()
        .map(|k| Ok((k.clone(), net.param(&k).expect("weight").as_tensor().abs()?)))
        .collect::<Result<_, candle_core::Error>>()?;
    select(&w, density, Allocation::Uniform).map_err(other)
}

fn count_changes(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> Result<usize, SearchError> {
    let mut n = 0;
    for (k, m) in a {
        n += m.ne(&b[k])?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()? as usize;
    }
    Ok(n)
}

fn rel(a: &Tensor, b: &Tensor) -> Result<f64, SearchError> {
    metrics::relative_distance(a, b).map_err(other)
}

/// The three terms of the NTT/AWT loss on one batch of `inputs` (method.md), with the kernels and
/// outputs they compare. Teacher quantities are constants (detached).
pub struct LossTerms {
    /// λ_ker · mean((Θ_s − Θ_T)²) over the two halves of the batch.
    pub kernel_term: Tensor,
    /// mean((f_s − f_T)²).
    pub output_term: Tensor,
    /// (λ_l2 / d) Σ ‖m ⊙ W_s‖².
    pub l2_term: Tensor,
    /// Student kernel.
    pub ks: Tensor,
    /// Teacher kernel (detached).
    pub kt: Tensor,
    /// Student outputs.
    pub fs: Tensor,
    /// Teacher outputs (detached).
    pub ft: Tensor,
}

/// The search loss on `inputs` (already adversarial for AWT), differentiable in the student's weights.
pub fn loss_terms(
    student: &Net,
    teacher: &Net,
    inputs: &Tensor,
    masks: &BTreeMap<String, Tensor>,
    cfg: &SearchConfig,
) -> Result<LossTerms, SearchError> {
    let half = inputs.dim(0)? / 2;
    let (x1, x2) = (inputs.narrow(0, 0, half)?, inputs.narrow(0, half, half)?);
    let kt = structured(&teacher.stages(), &x1, &x2, Kind::Full).map_err(other)?.detach();
    let ft = teacher.forward(inputs)?.detach();
    let ks = structured(&student.stages(), &x1, &x2, Kind::Full).map_err(other)?;
    let fs = student.forward(inputs)?;
    let kernel_term = ((&ks - &kt)?.sqr()?.mean_all()? * cfg.lambda_ker)?;
    let output_term = (&fs - &ft)?.sqr()?.mean_all()?;
    let mut l2 = Tensor::zeros((), student.dtype(), inputs.device())?;
    for k in student.weight_names() {
        let w = student.param(&k).expect("weight").as_tensor();
        let w = match masks.get(&k) {
            Some(m) => w.mul(m)?,
            None => w.clone(),
        };
        l2 = (l2 + w.sqr()?.sum_all()?)?;
    }
    let l2_term = (l2 * (cfg.lambda_l2 / cfg.density))?;
    Ok(LossTerms { kernel_term, output_term, l2_term, ks, kt, fs, ft })
}

/// Runs the search from the dense initialisation `teacher` on `data`.
pub fn search(
    teacher: &Net,
    data: &Split,
    cfg: &SearchConfig,
    progress: &mut dyn FnMut(&SearchLog),
) -> Result<Ticket, SearchError> {
    cfg.check()?;
    if !teacher.masks().is_empty() {
        return Err(SearchError::Invalid("the teacher must be a dense network (it has masks)".into()));
    }
    let dev = Device::Cpu;
    let teacher = teacher.deep_clone().map_err(other)?;
    let mut student = teacher.deep_clone().map_err(other)?;
    let mut masks = layerwise_magnitude(&teacher, cfg.density)?;
    for (k, m) in &masks {
        student.set_mask(k, m).map_err(other)?;
    }
    let weight_vars: Vec<(String, Var)> = student.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut opt = Optimizer::new(
        OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
        weight_vars,
    );
    let n = data.len();
    if n < cfg.batch {
        return Err(SearchError::Invalid(format!("the data has {n} examples, fewer than one batch of {}", cfg.batch)));
    }
    let per_epoch = n / cfg.batch;
    let mut log = Vec::with_capacity(cfg.steps);
    let input_shape = {
        let mut s = vec![0];
        s.extend(teacher.arch().input_shape());
        s
    };
    for step in 0..cfg.steps {
        let epoch = (step / per_epoch) as u64;
        let b = step % per_epoch;
        let order = epoch_order(n, cfg.seed, epoch);
        let idx = &order[b * cfg.batch..(b + 1) * cfg.batch];
        let (x, y) = data.batch(idx, &dev).map_err(other)?;
        let x = x.to_dtype(teacher.dtype())?;
        let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let inputs = match cfg.method {
            Method::Ntt => x.clone(),
            Method::Awt => {
                let seed = Rng::new(cfg.seed).derive("search-attack").fork(step as u64).next_u64();
                let pgd = Pgd {
                    eps: cfg.eps,
                    step_size: cfg.attack_step_size,
                    steps: cfg.attack_steps,
                    norm: Norm::Linf,
                    random_start: true,
                    restarts: 1,
                    loss: LossKind::CrossEntropy,
                    seed,
                };
                let adv =
                    |m: &Net, xs: &Tensor, ys: &Tensor, is: &[u64]| pgd.last_iterate(m, xs, ys, is).map_err(other);
                let xa = match cfg.adv_source {
                    AdvSource::Teacher => adv(&teacher, &x, &y, &ids)?,
                    AdvSource::Student => adv(&student, &x, &y, &ids)?,
                    AdvSource::Both => {
                        let h = cfg.batch / 2;
                        let a = adv(&teacher, &x.narrow(0, 0, h)?, &y.narrow(0, 0, h)?, &ids[..h])?;
                        let s =
                            adv(&student, &x.narrow(0, h, cfg.batch - h)?, &y.narrow(0, h, cfg.batch - h)?, &ids[h..])?;
                        Tensor::cat(&[&a, &s], 0)?
                    }
                };
                match cfg.inputs {
                    InputMix::Adversarial => xa.detach(),
                    InputMix::CleanAndAdversarial => Tensor::cat(&[&x, &xa.detach()], 0)?,
                }
            }
        };
        let mut shape = input_shape.clone();
        shape[0] = inputs.dim(0)?;
        let inputs = inputs.reshape(shape.as_slice())?;
        let terms = loss_terms(&student, &teacher, &inputs, &masks, cfg)?;
        let LossTerms { kernel_term, output_term, l2_term, ks, kt, fs, ft } = terms;
        let loss = ((&kernel_term + &output_term)? + &l2_term)?;
        let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Err(SearchError::Diverged { step, loss: lv });
        }
        let grads = loss.backward()?;
        opt.step(&grads, cfg.lr)?;
        let mut changes = 0;
        if cfg.mask_every > 0 && (step + 1) % cfg.mask_every == 0 && step + cfg.mask_every < cfg.steps {
            let new = layerwise_magnitude(&student, cfg.density)?;
            changes = count_changes(&masks, &new)?;
            for (k, m) in &new {
                student.set_mask(k, m).map_err(other)?;
            }
            masks = new;
        }
        let s = |t: &Tensor| -> Result<f64, SearchError> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let entry = SearchLog {
            step,
            loss: lv,
            kernel_term: s(&kernel_term)?,
            output_term: s(&output_term)?,
            l2_term: s(&l2_term)?,
            kernel_distance: rel(&ks.detach(), &kt)?,
            output_distance: rel(&fs.detach(), &ft)?,
            mask_changes: changes,
        };
        progress(&entry);
        log.push(entry);
    }
    // The ticket: the final mask with transferred or rewound weights.
    let mut ticket = match cfg.weights {
        WeightsFrom::Transferred => student,
        WeightsFrom::Rewind => {
            let mut t = teacher.deep_clone().map_err(other)?;
            for (k, m) in &masks {
                t.set_mask(k, m).map_err(other)?;
            }
            t
        }
    };
    ticket.apply_masks().map_err(other)?;
    let m = &mut ticket.meta;
    m.insert("method".into(), format!("{:?}", cfg.method).to_lowercase());
    m.insert("density".into(), cfg.density.to_string());
    m.insert(
        "search".into(),
        format!(
            "steps={} batch={} lr={} lambda_ker={} lambda_l2={} mask_every={} eps={} attack_steps={} attack_step_size={} adv_source={:?} inputs={:?} weights={:?} seed={}",
            cfg.steps, cfg.batch, cfg.lr, cfg.lambda_ker, cfg.lambda_l2, cfg.mask_every, cfg.eps, cfg.attack_steps, cfg.attack_step_size, cfg.adv_source, cfg.inputs, cfg.weights, cfg.seed
        ),
    );
    Ok(Ticket { net: ticket, log })
}

/// Relative kernel distance of `student` to `teacher` on `(x1, x2)` (for held-out checks).
pub fn kernel_distance(student: &Net, teacher: &Net, x1: &Tensor, x2: &Tensor) -> Result<f64, SearchError> {
    let ks = structured(&student.stages(), x1, x2, Kind::Full).map_err(other)?;
    let kt = structured(&teacher.stages(), x1, x2, Kind::Full).map_err(other)?;
    rel(&ks, &kt)
}
