//! The training loop, its configuration, run folders and resumption.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use awt_attack::{Attack, LossKind, Norm, Pgd, per_example_loss};
use awt_base::{Classifier, Rng};
use awt_data::{Split, epoch_order};
use candle_core::{D, DType, Tensor, Var};

use crate::optim::{Optimizer, OptimizerConfig, Schedule};

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error(
        "training diverged: non-finite {what} ({loss}) at epoch {epoch}, step {step} (global step {global}); the last checkpoint in {dir} is intact"
    )]
    Diverged {
        /// Epoch (0-based).
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// Global optimiser step.
        global: u64,
        /// `loss` or `parameter <name>`.
        what: String,
        /// The offending value.
        loss: f64,
        /// Run folder.
        dir: String,
    },
    /// A setting that cannot work, named.
    #[error("{0}")]
    Invalid(String),
    /// A run-folder file that cannot be read or written.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An attack failed.
    #[error(transparent)]
    Attack(#[from] awt_attack::AttackError),
    /// Data could not be batched.
    #[error(transparent)]
    Data(#[from] awt_data::DataError),
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> TrainError {
    TrainError::File { path: path.to_path_buf(), why: why.to_string() }
}

/// The training objective.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// Cross-entropy on clean inputs.
    Natural,
    /// PGD-AT: cross-entropy on ℓ∞ PGD examples with random start.
    Pgd {
        /// Radius.
        eps: f64,
        /// Attack steps.
        steps: usize,
        /// Attack step size.
        step_size: f64,
    },
    /// Fast AT: one FGSM step of size `step_size` (1.25 ε in Wong et al.) from a uniform random start.
    Fgsm {
        /// Radius.
        eps: f64,
        /// Step size.
        step_size: f64,
    },
    /// TRADES: CE(f(x), y) + β · KL(f(x) ‖ f(x')), x' maximising the KL by PGD.
    Trades {
        /// Radius.
        eps: f64,
        /// Attack steps.
        steps: usize,
        /// Attack step size.
        step_size: f64,
        /// Trade-off β.
        beta: f64,
    },
}

/// Everything that determines a run (its hash names the run and guards `resume`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// What each step minimises.
    pub objective: Objective,
    /// Run seed: shuffles and attack starts derive from it.
    pub seed: u64,
    /// Test examples (the first ones) for the per-epoch evaluation.
    pub eval_n: usize,
    /// ε of the per-epoch PGD evaluation.
    pub eval_eps: f64,
    /// Steps of the per-epoch PGD evaluation (step size 2.5 ε / steps).
    pub eval_steps: usize,
}

impl TrainConfig {
    /// Checks the settings once, at the boundary.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |s: String| Err(TrainError::Invalid(s));
        if self.epochs == 0 {
            return bad("epochs must be ≥ 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be ≥ 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be > 0, got {}", self.lr));
        }
        let (eps, step) = match self.objective {
            Objective::Natural => (0.0, 1.0),
            Objective::Pgd { eps, step_size, .. }
            | Objective::Fgsm { eps, step_size }
            | Objective::Trades { eps, step_size, .. } => (eps, step_size),
        };
        if !(eps.is_finite() && eps >= 0.0) {
            return bad(format!("training eps must be ≥ 0, got {eps}"));
        }
        if !(step.is_finite() && step > 0.0) {
            return bad(format!("attack step size must be > 0, got {step}"));
        }
        if let Schedule::OneCycle { warmup } = self.schedule
            && !(warmup > 0.0 && warmup < 1.0)
        {
            return bad(format!("one-cycle warm-up fraction must be in (0, 1), got {warmup}"));
        }
        Ok(())
    }
}

/// Metrics of one epoch (one line of `metrics.jsonl`).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss on the (adversarial) batches.
    pub train_loss: f64,
    /// Accuracy on the (adversarial) training batches.
    pub train_acc: f64,
    /// Clean accuracy on the evaluation subset.
    pub clean_acc: f64,
    /// PGD accuracy on the evaluation subset.
    pub robust_acc: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Wall time of the epoch (training and evaluation).
    pub seconds: f64,
    /// Extra numbers added by hooks (kernel distances, ...).
    pub extra: Vec<(String, f64)>,
}

impl EpochMetrics {
    fn json(&self) -> String {
        // JSON has no NaN: non-finite numbers (e.g. no evaluation subset) are written as null.
        let num = |v: f64| if v.is_finite() { v.to_string() } else { "null".into() };
        let mut s = format!(
            "{{\"epoch\":{},\"train_loss\":{},\"train_acc\":{},\"clean_acc\":{},\"robust_acc\":{},\"lr\":{},\"images_per_sec\":{},\"seconds\":{}",
            self.epoch,
            num(self.train_loss),
            num(self.train_acc),
            num(self.clean_acc),
            num(self.robust_acc),
            num(self.lr),
            num(self.images_per_sec),
            num(self.seconds)
        );
        for (k, v) in &self.extra {
            s.push_str(&format!(",\"{k}\":{}", num(*v)));
        }
        s.push('}');
        s
    }
}

/// Plug-in points of the loop. Every method has a default that does nothing.
pub trait Hooks {
    /// After each optimiser step (e.g. re-apply pruning masks).
    fn after_step(&mut self, _epoch: usize, _global_step: u64) -> Result<(), TrainError> {
        Ok(())
    }
    /// After each epoch's evaluation, before the checkpoint (e.g. add kernel distances to `m.extra`).
    fn after_epoch(&mut self, _m: &mut EpochMetrics) -> Result<(), TrainError> {
        Ok(())
    }
    /// Progress within an epoch (for progress bars).
    fn progress(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: f64, _acc: f64) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Where a run lives and how it starts.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The folder (created if missing).
    pub dir: PathBuf,
    /// Hash of the full configuration; `resume` refuses a different one.
    pub config_hash: String,
    /// Continue from `state.safetensors` instead of starting fresh.
    pub resume: bool,
}

/// What a finished run returns.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The metrics of the epochs run by this call (`metrics.jsonl` holds every epoch).
    pub epochs: Vec<EpochMetrics>,
    /// The epoch that was resumed from, if any.
    pub resumed_from: Option<usize>,
}

const STATE: &str = "state.safetensors";
const METRICS: &str = "metrics.jsonl";

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
    let logp = log_softmax(&model.logits(x)?.detach())?;
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
fn evaluate(model: &dyn Classifier, eval: &Split, cfg: &TrainConfig, dtype: DType) -> Result<(f64, f64), TrainError> {
    let n = cfg.eval_n.min(eval.len());
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let dev = candle_core::Device::Cpu;
    let steps = cfg.eval_steps.max(1);
    let pgd = Pgd {
        eps: cfg.eval_eps,
        step_size: (2.5 * cfg.eval_eps / steps as f64).max(1e-6),
        steps: cfg.eval_steps,
        norm: Norm::Linf,
        random_start: true,
        restarts: 1,
        loss: LossKind::CrossEntropy,
        seed: Rng::new(cfg.seed).derive("eval").next_u64(),
    };
    let (mut clean, mut robust) = (0usize, 0usize);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(500) {
        let (x, y) = eval.batch(chunk, &dev)?;
        let x = x.to_dtype(dtype)?;
        let pred = model.logits(&x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let yv = y.to_vec1::<u32>()?;
        let ok: Vec<bool> = pred.iter().zip(&yv).map(|(a, b)| a == b).collect();
        clean += ok.iter().filter(|&&b| b).count();
        let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
        let out = pgd.perturb(model, &x, &y, None, &ids)?;
        robust += ok.iter().zip(&out.fooled).filter(|(c, f)| **c && !**f).count();
    }
    Ok((clean as f64 / n as f64, robust as f64 / n as f64))
}

fn save_state(dir: &Path, vars: &[(String, Var)], opt: &Optimizer, epoch: usize, hash: &str) -> Result<(), TrainError> {
    let path = dir.join(STATE);
    let mut tensors: Vec<(String, Tensor)> =
        vars.iter().map(|(n, v)| (format!("param.{n}"), v.as_tensor().clone())).collect();
    tensors.extend(opt.state());
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let meta = std::collections::BTreeMap::from([
        ("epoch".to_string(), epoch.to_string()),
        ("config_hash".to_string(), hash.to_string()),
        ("optimizer_steps".to_string(), opt.steps().to_string()),
    ]);
    let bytes = awt_base::safetensors_bytes(&tensors, &meta).map_err(|e| file_err(&path, e))?;
    awt_base::write_atomic(&path, &bytes).map_err(|e| file_err(&path, e))
}

/// Loads a checkpoint into `vars` and `opt`; returns the epoch it finished.
fn load_state(dir: &Path, vars: &[(String, Var)], opt: &mut Optimizer, hash: &str) -> Result<usize, TrainError> {
    let path = dir.join(STATE);
    let bytes = std::fs::read(&path).map_err(|e| file_err(&path, format!("cannot resume: {e}")))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| file_err(&path, e))?;
    let meta = md.metadata().clone().unwrap_or_default();
    let saved_hash = meta.get("config_hash").cloned().unwrap_or_default();
    if saved_hash != hash {
        return Err(file_err(
            &path,
            format!(
                "was written by a run with config hash {saved_hash}, this run's is {hash}: refusing to resume a different configuration"
            ),
        ));
    }
    let epoch: usize =
        meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| file_err(&path, "no epoch in metadata"))?;
    let steps: u64 = meta.get("optimizer_steps").and_then(|e| e.parse().ok()).unwrap_or(0);
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| file_err(&path, e))?;
    let dev = candle_core::Device::Cpu;
    let mut all = HashMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, &dev)
            .map_err(|e| file_err(&path, format!("tensor `{name}`: {e}")))?;
        all.insert(name, t);
    }
    for (name, v) in vars {
        let t = all
            .get(&format!("param.{name}"))
            .ok_or_else(|| file_err(&path, format!("missing tensor `param.{name}`")))?;
        v.set(t)?;
    }
    opt.restore(&all, steps);
    Ok(epoch)
}

/// Trains `model` (whose parameters are `vars`) on `data`, evaluating on `eval` after each epoch.
pub fn train(
    model: &dyn Classifier,
    vars: Vec<(String, Var)>,
    data: &Split,
    eval: &Split,
    cfg: &TrainConfig,
    run: &RunDir,
    hooks: &mut dyn Hooks,
) -> Result<Summary, TrainError> {
    cfg.check()?;
    std::fs::create_dir_all(&run.dir).map_err(|e| file_err(&run.dir, e))?;
    let state_path = run.dir.join(STATE);
    let metrics_path = run.dir.join(METRICS);
    if vars.is_empty() {
        return Err(TrainError::Invalid("the model has no parameters to train".into()));
    }
    let mut opt = Optimizer::new(cfg.optimizer.clone(), vars.clone());
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut start = 0;
    let mut resumed_from = None;
    if run.resume {
        let done = load_state(&run.dir, &vars, &mut opt, &run.config_hash)?;
        start = done + 1;
        resumed_from = Some(done);
        // Keep the metrics of finished epochs only (a crash can leave a line for an epoch whose
        // checkpoint was never written).
        let text = std::fs::read_to_string(&metrics_path).unwrap_or_default();
        let kept: Vec<&str> = text.lines().take(start).collect();
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        awt_base::write_atomic(&metrics_path, body.as_bytes()).map_err(|e| file_err(&metrics_path, e))?;
        tracing::info!(epoch = done, "resumed");
    } else if state_path.exists() {
        return Err(file_err(
            &state_path,
            "a run already lives in this folder: pass --resume to continue it, or choose another --out",
        ));
    } else {
        awt_base::write_atomic(&metrics_path, b"").map_err(|e| file_err(&metrics_path, e))?;
    }
    let n = data.len();
    let batches_per_epoch = n.div_ceil(cfg.batch_size);
    let total_steps = (batches_per_epoch * cfg.epochs) as u64;
    let dev = candle_core::Device::Cpu;
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
            let seed = attack_seed(cfg.seed, epoch, b);
            let (loss, ok) = match cfg.objective {
                Objective::Natural => ce_and_acc(&model.logits(&x)?, &y)?,
                Objective::Pgd { eps, steps, step_size } => {
                    let pgd = Pgd {
                        eps,
                        step_size,
                        steps,
                        norm: Norm::Linf,
                        random_start: true,
                        restarts: 1,
                        loss: LossKind::CrossEntropy,
                        seed,
                    };
                    // Madry et al. train on the last PGD iterate. (The best iterate, which stops at the first
                    // point that fools the model, is a weaker training adversary: it gave ~3 points less
                    // robustness than PyTorch's recipe.)
                    let xa = pgd.last_iterate(model, &x, &y, &ids)?;
                    ce_and_acc(&model.logits(&xa)?, &y)?
                }
                Objective::Fgsm { eps, step_size } => {
                    let f = Pgd {
                        eps,
                        step_size,
                        steps: 1,
                        norm: Norm::Linf,
                        random_start: true,
                        restarts: 1,
                        loss: LossKind::CrossEntropy,
                        seed,
                    };
                    // Fast AT trains on the step's result itself, not the best iterate.
                    let xa = f.last_iterate(model, &x, &y, &ids)?;
                    ce_and_acc(&model.logits(&xa)?, &y)?
                }
                Objective::Trades { eps, steps, step_size, beta } => {
                    let xa = trades_attack(model, &x, &ids, eps, steps, step_size, seed)?;
                    let z = model.logits(&x)?;
                    let za = model.logits(&xa)?;
                    let (ce, ok) = ce_and_acc(&z, &y)?;
                    let robust = kl(&log_softmax(&z)?, &za)?.mean_all()?;
                    ((ce + (robust * beta)?)?, ok)
                }
            };
            let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let diverged = |what: String, v: f64| TrainError::Diverged {
                epoch,
                step: b,
                global,
                what,
                loss: v,
                dir: run.dir.display().to_string(),
            };
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
        let (clean_acc, robust_acc) = evaluate(model, eval, cfg, vars[0].1.dtype())?;
        let mut m = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            clean_acc,
            robust_acc,
            lr,
            images_per_sec: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
            extra: Vec::new(),
        };
        hooks.after_epoch(&mut m)?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&metrics_path)
            .map_err(|e| file_err(&metrics_path, e))?;
        writeln!(f, "{}", m.json()).map_err(|e| file_err(&metrics_path, e))?;
        f.sync_all().map_err(|e| file_err(&metrics_path, e))?;
        save_state(&run.dir, &vars, &opt, epoch, &run.config_hash)?;
        tracing::info!(epoch, loss = m.train_loss, clean = m.clean_acc, robust = m.robust_acc, "epoch done");
        epochs.push(m);
    }
    Ok(Summary { epochs, resumed_from })
}
