//! The training loop: one readable page per epoch, with the objectives' losses and the per-epoch
//! evaluation beside it.

use std::collections::BTreeMap;
use std::time::Instant;

use awt_attack::{Attack, LossKind, Pgd, per_example_loss};
use awt_base::{Classifier, Rng};
use awt_data::{Split, epoch_order};
use candle_core::{D, DType, Tensor, Var};

use crate::config::{Objective, TrainConfig, ValidTrainConfig};
use crate::error::TrainError;
use crate::folder::RunFolder;
use crate::optim::Optimizer;

/// Metrics of one epoch (the awt binary writes one per line of `metrics.jsonl`; non-finite numbers
/// serialise as null): the run contract's line.
pub use awt_runs::records::EpochLine as EpochMetrics;

/// Plug-in points of the loop. Every method has a default that does nothing.
pub trait Hooks {
    /// After each optimiser step (e.g. re-apply pruning masks).
    fn after_step(&mut self, _epoch: usize, _global_step: u64) -> Result<(), TrainError> {
        Ok(())
    }
    /// After each epoch's evaluation, before the epoch's checkpoint (e.g. add kernel distances to
    /// `m.extra`, record the metrics). A crash after it and before the checkpoint repeats the epoch
    /// on resume, and [`Hooks::restore`] says from where.
    fn after_epoch(&mut self, _m: &mut EpochMetrics) -> Result<(), TrainError> {
        Ok(())
    }
    /// Progress within an epoch (for progress bars).
    fn progress(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: f64, _acc: f64) {}
    /// State the hook needs after a resume (e.g. the best score so far), saved in each epoch's
    /// checkpoint after `after_epoch`.
    fn state(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Called once when a run resumes from the checkpoint of epoch `epoch` (0-based), with the
    /// [`Hooks::state`] saved in it; anything recorded for later epochs is to be discarded.
    fn restore(&mut self, _epoch: usize, _state: &BTreeMap<String, String>) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// What a finished run returns.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The metrics of the epochs run by this call (`metrics.jsonl` holds every epoch).
    pub epochs: Vec<EpochMetrics>,
    /// The epoch that was resumed from, if any.
    pub resumed_from: Option<usize>,
}

/// Per-example cross-entropy averaged over the batch, and the predictions.
fn ce_and_acc(logits: &Tensor, y: &Tensor) -> candle_core::Result<(Tensor, usize)> {
    let loss = per_example_loss(logits, y, None, LossKind::CrossEntropy)?.mean_all()?;
    let correct = logits.argmax(D::Minus1)?.eq(y)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize;
    Ok((loss, correct))
}

/// KL(p ‖ softmax(z)) per example, with `logp` the log-probabilities of p.
fn kl(logp: &Tensor, z: &Tensor) -> candle_core::Result<Tensor> {
    let logq = z.broadcast_sub(&z.log_sum_exp(D::Minus1)?.unsqueeze(1)?)?;
    logp.exp()?.mul(&(logp - logq)?)?.sum(D::Minus1)
}

fn log_softmax(z: &Tensor) -> candle_core::Result<Tensor> {
    z.broadcast_sub(&z.log_sum_exp(D::Minus1)?.unsqueeze(1)?)
}

/// TRADES' inner maximisation of KL(f(x) ‖ f(x')), from x + 0.001·N(0, 1) (per-example streams).
fn trades_attack(
    model: &dyn Classifier,
    x: &Tensor,
    ids: &[u64],
    eps: f64,
    steps: usize,
    alpha: f64,
    seed: u64,
) -> Result<Tensor, TrainError> {
    let logp = log_softmax(&model.predict(x)?)?;
    let root = Rng::new(seed).derive("trades");
    let n = ids.len();
    let d = x.elem_count() / n.max(1);
    let mut noise = Vec::with_capacity(n * d);
    for &id in ids {
        let mut r = root.fork(id);
        noise.extend((0..d).map(|_| 0.001 * r.normal()));
    }
    let noise = Tensor::from_vec(noise, x.shape(), x.device())?.to_dtype(x.dtype())?;
    let mut xa = (x + noise)?.clamp(0.0, 1.0)?;
    for _ in 0..steps {
        let (_, _, g) = model.loss_and_input_grad(&xa, &|z: &Tensor| kl(&logp, z))?;
        xa = (xa + (g.sign()? * alpha)?)?.clamp(&(x - eps)?, &(x + eps)?)?.clamp(0.0, 1.0)?.detach();
    }
    Ok(xa)
}

fn attack_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    Rng::new(seed).derive("train-attack").fork(epoch as u64).fork(batch as u64).next_u64()
}

/// Clean and PGD accuracy on the first `cfg.eval_n` examples of `eval`.
fn evaluate(
    model: &dyn Classifier,
    eval: &Split,
    cfg: &TrainConfig,
    (dtype, dev): (DType, &candle_core::Device),
) -> Result<(f64, f64), TrainError> {
    if cfg.eval_n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let n = cfg.eval_n.min(eval.len());
    if n == 0 {
        return Err(TrainError::Invalid("the evaluation split is empty".into()));
    }
    let step = Pgd::eval_step(cfg.eval_eps, cfg.eval_steps).max(1e-6);
    let pgd = Pgd::linf(cfg.eval_eps, cfg.eval_steps, step, Rng::new(cfg.seed).derive("eval").next_u64());
    let (mut clean, mut robust) = (0usize, 0usize);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(500) {
        let (x, y) = eval.batch(chunk, dev)?;
        let x = x.to_dtype(dtype)?;
        let z = model.predict(&x)?;
        awt_attack::finite_logits(&z)?;
        let pred = z.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let yv = y.to_vec1::<u32>()?;
        let ok: Vec<bool> = pred.iter().zip(&yv).map(|(a, b)| a == b).collect();
        clean += ok.iter().filter(|&&b| b).count();
        if cfg.eval_steps > 0 {
            let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
            let out = pgd.perturb(model, &x, &y, None, &ids)?;
            robust += ok.iter().zip(&out.fooled).filter(|(c, f)| **c && !**f).count();
        }
    }
    let robust = if cfg.eval_steps > 0 { robust as f64 / n as f64 } else { f64::NAN };
    Ok((clean as f64 / n as f64, robust))
}

/// The loss on one batch under `objective`, and the number of correctly classified (adversarial)
/// examples. `seed` fixes the attack's random start; `ids` are the examples' dataset indices.
fn batch_loss(
    model: &dyn Classifier,
    objective: &Objective,
    x: &Tensor,
    y: &Tensor,
    ids: &[u64],
    seed: u64,
) -> Result<(Tensor, usize), TrainError> {
    let pgd = |eps, step_size, steps| Pgd::linf(eps, steps, step_size, seed);
    Ok(match *objective {
        Objective::Natural => ce_and_acc(&model.logits(x)?, y)?,
        // Madry et al. train on the last PGD iterate. (The best iterate, which stops at the first
        // point that fools the model, is a weaker training adversary: it gave ~3 points less
        // robustness than PyTorch's recipe.) Fast AT likewise trains on its one step's result.
        Objective::Pgd { eps, steps, step_size } => {
            let xa = pgd(eps, step_size, steps).last_iterate(model, x, y, ids)?;
            ce_and_acc(&model.logits(&xa)?, y)?
        }
        Objective::Fgsm { eps, step_size } => {
            let xa = pgd(eps, step_size, 1).last_iterate(model, x, y, ids)?;
            ce_and_acc(&model.logits(&xa)?, y)?
        }
        Objective::Trades { eps, steps, step_size, beta } => {
            let xa = trades_attack(model, x, ids, eps, steps, step_size, seed)?;
            let z = model.logits(x)?;
            let za = model.logits(&xa)?;
            let (ce, ok) = ce_and_acc(&z, y)?;
            let robust = kl(&log_softmax(&z)?, &za)?.mean_all()?;
            ((ce + (robust * beta)?)?, ok)
        }
    })
}

/// Trains `model` (whose parameters are `vars`) on `data`, evaluating on `eval` after each epoch,
/// in the open run folder `run` (a fresh run, or one that resumes from its last checkpoint).
pub fn train(
    model: &dyn Classifier,
    vars: Vec<(String, Var)>,
    data: &Split,
    eval: &Split,
    cfg: &ValidTrainConfig,
    run: &RunFolder,
    hooks: &mut dyn Hooks,
) -> Result<Summary, TrainError> {
    if vars.is_empty() {
        return Err(TrainError::Invalid("the model has no parameters to train".into()));
    }
    if data.is_empty() {
        return Err(TrainError::Invalid("there are no training examples".into()));
    }
    let mut opt = Optimizer::new(cfg.optimizer.clone(), vars.clone());
    let (start, resumed_from) = if run.resuming() {
        let (done, hook_state) = run.load_state(&vars, &mut opt)?;
        hooks.restore(done, &hook_state)?;
        tracing::info!(epoch = done, "resumed");
        (done + 1, Some(done))
    } else {
        (0, None)
    };
    let n = data.len();
    let batches_per_epoch = n.div_ceil(cfg.batch_size);
    let total_steps = (batches_per_epoch * cfg.epochs) as u64;
    // Batches go to the device of the model's parameters.
    let dev = vars[0].1.device().clone();
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    for epoch in start..cfg.epochs {
        let t0 = Instant::now();
        let order = epoch_order(n, cfg.seed, epoch as u64);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = cfg.lr;
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let global = (epoch * batches_per_epoch + b) as u64;
            lr = cfg.schedule.lr(cfg.lr, epoch, global, total_steps);
            let (x, y) = data.batch(idx, &dev)?;
            let x = x.to_dtype(vars[0].1.dtype())?;
            let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
            let diverged = |what: String, v: f64| TrainError::Diverged {
                epoch,
                step: b,
                global,
                what,
                loss: v,
                dir: run.dir().display().to_string(),
                checkpoint: run.checkpoint_epoch(),
            };
            // Weights that grew past what f32 holds make the logits overflow inside the attack:
            // that is the training diverging, not a broken evaluation.
            let (loss, ok) = match batch_loss(model, &cfg.objective, &x, &y, &ids, attack_seed(cfg.seed, epoch, b)) {
                Err(TrainError::Attack(awt_attack::AttackError::NonFinite { .. })) => {
                    return Err(diverged("logits".into(), f64::NAN));
                }
                r => r?,
            };
            let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !lv.is_finite() {
                return Err(diverged("loss".into(), lv));
            }
            let grads = loss.backward()?;
            opt.step(&grads, lr)?;
            // candle's ReLU maps NaN to 0 (and its derivative to 0), so NaN weights can hide behind a
            // finite loss and zero gradients; the parameters themselves cannot.
            for (name, v) in &vars {
                let s = v.as_tensor().sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !s.is_finite() {
                    return Err(diverged(format!("parameter {name}"), s));
                }
            }
            hooks.after_step(epoch, global)?;
            loss_sum += lv * idx.len() as f64;
            correct += ok;
            seen += idx.len();
            hooks.progress(epoch, b + 1, batches_per_epoch, loss_sum / seen as f64, correct as f64 / seen as f64);
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let (clean_acc, robust_acc) = evaluate(model, eval, cfg, (vars[0].1.dtype(), &dev))?;
        let mut m = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            clean_acc,
            robust_acc,
            lr,
            images_per_sec: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
            extra: BTreeMap::new(),
        };
        hooks.after_epoch(&mut m)?;
        run.save_state(&vars, &opt, epoch, &hooks.state())?;
        tracing::info!(epoch, loss = m.train_loss, clean = m.clean_acc, robust = m.robust_acc, "epoch done");
        epochs.push(m);
    }
    Ok(Summary { epochs, resumed_from })
}
