//! `awt train`: adversarial training of a zoo network, dense or with a fixed mask, as a resumable run
//! folder (config.toml, metrics.jsonl, state.safetensors, model.safetensors, summary.json).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use awt_nets::{Init, Net};
use awt_train::{EpochMetrics, Hooks, Objective, OptimizerConfig, RunFolder, Schedule, TrainConfig, TrainError};
use candle_core::{DType, Device};
use clap::Args;

use crate::output::say;
use crate::util::{config_hash, git_commit};

/// Flags of `awt train` (a `--config FILE.toml` with the same keys may give any of them).
#[derive(Args, Debug, Clone)]
pub(crate) struct TrainArgs {
    /// Read flags from a TOML file (`key = value`, same names as the flags); flags given on the
    /// command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture of a fresh network (ignored with --init/--ticket, which carry theirs).
    #[arg(long, default_value = "lenet-300-100")]
    pub arch: String,
    #[command(flatten)]
    pub data: crate::util::DataArgs,
    /// Start from this checkpoint (its masks, if any, stay fixed).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Start from this ticket (a checkpoint that must hold masks).
    #[arg(long)]
    pub ticket: Option<PathBuf>,
    /// none, pgd, fgsm (fast AT with random start) or trades.
    #[arg(long, default_value = "pgd")]
    pub adv: String,
    #[arg(long, default_value_t = 0.1)]
    pub eps: f64,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Attack step size (default: 0.25 ε for PGD/TRADES, 1.25 ε for FGSM).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// TRADES β.
    #[arg(long, default_value_t = 6.0)]
    pub beta: f64,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// sgd, adam or adamw.
    #[arg(long, default_value = "sgd")]
    pub opt: String,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, default_value_t = 0.0)]
    pub wd: f64,
    /// constant, cosine, multistep or onecycle.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// multistep: comma-separated epochs.
    #[arg(long, default_value = "")]
    pub milestones: String,
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// onecycle: warm-up fraction.
    #[arg(long, default_value_t = 0.3)]
    pub warmup: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Test examples for the per-epoch evaluation.
    #[arg(long, default_value_t = 1000)]
    pub eval_n: usize,
    /// PGD steps of the per-epoch evaluation.
    #[arg(long, default_value_t = 20)]
    pub eval_steps: usize,
    /// Also keep best.safetensors, the epoch with the best robust test accuracy.
    #[arg(long)]
    pub keep_best: bool,
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Track the kernel each epoch against this dense reference network (usually the dense
    /// initialisation), on PGD examples of the reference for the first 32 test images: adds
    /// `kernel_to_reference` and `kernel_to_initial` to metrics.jsonl.
    #[arg(long)]
    pub track_kernel: Option<PathBuf>,
}

/// Expands `--config FILE` into flags placed before the explicit ones (which then win).
pub(crate) fn expand_config(args: Vec<String>) -> Result<Vec<String>> {
    let Some(pos) = args.iter().position(|a| a == "--config") else { return Ok(args) };
    let path = args.get(pos + 1).context("--config needs a file")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let table: toml::Table = text.parse().with_context(|| format!("{path}: not valid TOML"))?;
    let mut flags = Vec::new();
    for (k, v) in table {
        let flag = format!("--{}", k.replace('_', "-"));
        match v {
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => flags.extend([flag, s]),
            toml::Value::Integer(i) => flags.extend([flag, i.to_string()]),
            toml::Value::Float(f) => flags.extend([flag, f.to_string()]),
            toml::Value::Array(a) => {
                flags.extend([flag, a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")])
            }
            other => bail!("{path}: key `{k}` has an unsupported value {other}"),
        }
    }
    let mut out: Vec<String> = args[..pos].to_vec();
    // Config flags go right after the subcommand, before the explicit ones.
    let sub = out.iter().position(|a| a == "train").map(|i| i + 1).unwrap_or(out.len());
    let rest: Vec<String> = args[pos + 2..].to_vec();
    out.splice(sub..sub, flags);
    out.extend(rest);
    Ok(out)
}

/// The run's configuration as written to `config.toml`: the flags' names and values, absent
/// options left out, so that `--config <run>/config.toml` reproduces the run.
#[derive(serde::Serialize)]
struct RunToml<'a> {
    arch: &'a str,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<String>,
    adv: &'a str,
    eps: f64,
    steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    step_size: Option<f64>,
    beta: f64,
    epochs: usize,
    batch: usize,
    opt: &'a str,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    wd: f64,
    schedule: &'a str,
    milestones: &'a str,
    gamma: f64,
    warmup: f64,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    train_limit: Option<usize>,
    eval_n: usize,
    eval_steps: usize,
    keep_best: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_kernel: Option<String>,
}

impl TrainArgs {
    /// The run's configuration as TOML (the file written to the run folder), without `out`/`resume`.
    fn canonical(&self, arch: &str) -> Result<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let t = RunToml {
            arch,
            data: &self.data.name,
            init: path(&self.init),
            ticket: path(&self.ticket),
            adv: &self.adv,
            eps: self.eps,
            steps: self.steps,
            step_size: self.step_size,
            beta: self.beta,
            epochs: self.epochs,
            batch: self.batch,
            opt: &self.opt,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            wd: self.wd,
            schedule: &self.schedule,
            milestones: &self.milestones,
            gamma: self.gamma,
            warmup: self.warmup,
            seed: self.seed,
            train_limit: self.train_limit,
            eval_n: self.eval_n,
            eval_steps: self.eval_steps,
            keep_best: self.keep_best,
            track_kernel: path(&self.track_kernel),
        };
        Ok(toml::to_string(&t)?)
    }

    /// The library configuration, validated.
    pub(crate) fn train_config(&self) -> Result<TrainConfig> {
        let objective = match self.adv.as_str() {
            "none" => Objective::Natural,
            "pgd" => Objective::Pgd {
                eps: self.eps,
                steps: self.steps,
                step_size: self.step_size.unwrap_or(0.25 * self.eps),
            },
            "fgsm" => Objective::Fgsm { eps: self.eps, step_size: self.step_size.unwrap_or(1.25 * self.eps) },
            "trades" => Objective::Trades {
                eps: self.eps,
                steps: self.steps,
                step_size: self.step_size.unwrap_or(0.25 * self.eps),
                beta: self.beta,
            },
            other => bail!("--adv: unknown objective `{other}`: expected none, pgd, fgsm or trades"),
        };
        let optimizer = match self.opt.as_str() {
            "sgd" => OptimizerConfig::Sgd {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: self.nesterov,
                weight_decay: self.wd,
            },
            "adam" => {
                OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: self.wd, decoupled: false }
            }
            "adamw" => {
                OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: self.wd, decoupled: true }
            }
            other => bail!("--opt: unknown optimiser `{other}`: expected sgd, adam or adamw"),
        };
        let schedule = match self.schedule.as_str() {
            "constant" => Schedule::Constant,
            "cosine" => Schedule::Cosine,
            "onecycle" => Schedule::OneCycle { warmup: self.warmup },
            "multistep" => {
                let milestones = self
                    .milestones
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim().parse::<usize>().with_context(|| format!("--milestones: `{s}` is not an epoch number"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Schedule::MultiStep { milestones, gamma: self.gamma }
            }
            other => bail!("--schedule: unknown schedule `{other}`: expected constant, cosine, multistep or onecycle"),
        };
        if self.init.is_some() && self.ticket.is_some() {
            bail!("--init and --ticket are exclusive");
        }
        let cfg = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            lr: self.lr,
            optimizer,
            schedule,
            objective,
            seed: self.seed,
            eval_n: self.eval_n,
            eval_eps: self.eps,
            eval_steps: self.eval_steps,
        };
        if self.train_limit == Some(0) {
            bail!("--train-limit must be ≥ 1 (it counts training examples)");
        }
        if self.eval_n == 0 {
            bail!("--eval-n must be ≥ 1: the per-epoch evaluation needs test examples");
        }
        cfg.check().map_err(flag_error)?;
        Ok(cfg)
    }
}

/// A library error in the command line's words: a setting becomes its flag.
pub(crate) fn flag_error(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Setting { setting, why } => match setting {
            "beta1" | "beta2" | "adam_eps" | "dampening" => anyhow::anyhow!("optimiser setting {setting}: {why}"),
            _ => anyhow::anyhow!("--{} {why}", setting.replace('_', "-")),
        },
        other => anyhow::Error::new(other),
    }
}

/// Keeps masks applied, saves the best robust checkpoint, draws the progress bar.
struct CliHooks<'a> {
    net: &'a Net,
    tracker: Option<awt_ntk::Tracker>,
    /// With --keep-best: the best robust accuracy so far, its epoch, and where the checkpoint goes.
    best: Option<(f64, Option<usize>, PathBuf)>,
    bar: indicatif::ProgressBar,
    epochs: usize,
}

impl Hooks for CliHooks<'_> {
    fn after_step(&mut self, _epoch: usize, _global: u64) -> Result<(), TrainError> {
        self.net.apply_masks().map_err(TrainError::hook)
    }

    fn after_epoch(&mut self, m: &mut EpochMetrics) -> Result<(), TrainError> {
        if let Some(t) = &self.tracker {
            use awt_base::Staged;
            let rec = t.measure(&self.net.stages()).map_err(TrainError::hook)?;
            for r in rec {
                m.extra.push(("kernel_to_initial".into(), r.to_initial));
                if let Some(d) = r.to_reference {
                    m.extra.push(("kernel_to_reference".into(), d));
                }
            }
        }
        if let Some((best, best_epoch, path)) = &mut self.best {
            // Without a robust evaluation (--eval-steps 0) the best epoch is the best clean one.
            let score = if m.robust_acc.is_finite() { m.robust_acc } else { m.clean_acc };
            if score > *best {
                *best = score;
                *best_epoch = Some(m.epoch);
                let mut net = self.net.clone();
                net.meta.insert("best_epoch".into(), m.epoch.to_string());
                awt_nets::save(&net, path).map_err(TrainError::hook)?;
            }
        }
        let robust = if m.robust_acc.is_finite() { format!("{:.2}%", 100.0 * m.robust_acc) } else { "-".into() };
        let line = format!(
            "epoch {:>3}/{}: loss {:.4}  train acc {:.2}%  clean {:.2}%  PGD {robust}  lr {:.2e}  {:.0} img/s  {:.1} s",
            m.epoch + 1,
            self.epochs,
            m.train_loss,
            100.0 * m.train_acc,
            100.0 * m.clean_acc,
            m.lr,
            m.images_per_sec,
            m.seconds
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
        Ok(())
    }

    fn progress(&mut self, epoch: usize, batch: usize, batches: usize, loss: f64, acc: f64) {
        if batch == 1 {
            self.bar.set_length(batches as u64);
            self.bar.reset();
            self.bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
        }
        self.bar.set_position(batch as u64);
        self.bar.set_message(format!("loss {loss:.4} train acc {:.1}%", 100.0 * acc));
    }

    fn state(&self) -> BTreeMap<String, String> {
        match &self.best {
            Some((score, Some(epoch), _)) => {
                BTreeMap::from([("best_score".into(), score.to_string()), ("best_epoch".into(), epoch.to_string())])
            }
            _ => BTreeMap::new(),
        }
    }

    fn restore(&mut self, state: &BTreeMap<String, String>) -> Result<(), TrainError> {
        if let Some((best, best_epoch, _)) = &mut self.best
            && let (Some(s), Some(e)) = (state.get("best_score"), state.get("best_epoch"))
        {
            let bad = |what: &str| TrainError::Invalid(format!("checkpoint: bad {what} in the hook state"));
            *best = s.parse().map_err(|_| bad("best_score"))?;
            *best_epoch = Some(e.parse().map_err(|_| bad("best_epoch"))?);
        }
        Ok(())
    }
}

/// Loads or initialises the network for a training run.
pub(crate) fn starting_net(a: &TrainArgs) -> Result<Net> {
    let net = match (&a.init, &a.ticket) {
        (Some(p), None) | (None, Some(p)) => {
            let arch = if a.arch.is_empty() { None } else { Some(crate::commands::parse_arch(&a.arch)?) };
            let loaded = awt_nets::load(p, None, DType::F32, &Device::Cpu)
                .or_else(|_| awt_nets::load(p, arch.as_ref(), DType::F32, &Device::Cpu))?;
            if a.ticket.is_some() && loaded.net.masks().is_empty() {
                bail!("--ticket {}: the file holds no masks (use --init for a dense starting point)", p.display());
            }
            loaded.net
        }
        _ => Net::init(&crate::commands::parse_arch(&a.arch)?, Init::KaimingUniform, a.seed, DType::F32, &Device::Cpu)?,
    };
    net.apply_masks()?;
    Ok(net)
}

/// The files a run writes into its folder (inputs may not be any of them).
const RUN_FILES: [&str; 7] = [
    "config.toml",
    "metrics.jsonl",
    "state.safetensors",
    "model.safetensors",
    "best.safetensors",
    "summary.json",
    ".lock",
];

/// Runs `awt train`; returns the trained network, the metrics of the epochs run, and the number of
/// test images the per-epoch evaluation used.
pub(crate) fn run_training(a: &TrainArgs, show_progress: bool) -> Result<(Net, Vec<EpochMetrics>, usize)> {
    // Every check comes before the first write: a refused run leaves its folder as it was.
    let cfg = a.train_config()?;
    let inputs: Vec<(&str, &Path)> =
        [("--init", &a.init), ("--ticket", &a.ticket), ("--track-kernel", &a.track_kernel)]
            .into_iter()
            .filter_map(|(f, p)| Some((f, p.as_deref()?)))
            .collect();
    for file in RUN_FILES {
        crate::util::refuse_overwriting_inputs("--out", &a.out.join(file), &inputs)?;
    }
    let net = starting_net(a)?;
    let arch = net.arch().to_string();
    let ds = a.data.load_for(&net)?;
    let train_split = match a.train_limit {
        Some(n) => ds.train.subset(0, n.min(ds.train.len()))?,
        None => ds.train.clone(),
    };
    let canonical = a.canonical(&arch)?;
    let hash = config_hash(&canonical);
    let tracker = match &a.track_kernel {
        None => None,
        Some(p) => {
            use awt_base::Staged;
            let reference = awt_nets::load(p, None, DType::F32, &Device::Cpu)?.net;
            let idx: Vec<usize> = (0..32.min(ds.test.len())).collect();
            let (x, y) = ds.test.batch(&idx, &Device::Cpu)?;
            let pgd = awt_attack::Pgd {
                eps: a.eps,
                step_size: 0.25 * a.eps,
                steps: 10,
                norm: awt_attack::Norm::Linf,
                random_start: true,
                restarts: 1,
                loss: awt_attack::LossKind::CrossEntropy,
                seed: a.seed,
            };
            let xa = pgd.last_iterate(&reference, &x, &y, &idx.iter().map(|&i| i as u64).collect::<Vec<_>>())?;
            let mut shape = vec![idx.len()];
            shape.extend(reference.arch().input_shape());
            let probes = vec![("adversarial".to_string(), xa.reshape(shape.as_slice())?)];
            Some(awt_ntk::Tracker::new(&net.stages(), Some(&reference.stages()), &probes, 64)?)
        }
    };
    let folder = RunFolder::open(&a.out, &canonical, &hash, a.resume).map_err(flag_error)?;
    let bar = crate::output::progress(1, "epoch");
    if !show_progress || a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut hooks = CliHooks {
        net: &net,
        tracker,
        best: a.keep_best.then(|| (f64::NEG_INFINITY, None, a.out.join("best.safetensors"))),
        bar,
        epochs: a.epochs,
    };
    let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let summary =
        awt_train::train(&net, vars, &train_split, &ds.test, &cfg, &folder, &mut hooks).map_err(flag_error)?;
    hooks.bar.finish_and_clear();
    let mut out = net.clone();
    out.meta.insert("git_commit".into(), git_commit().into());
    out.meta.insert("train_config_hash".into(), hash.clone());
    out.meta.insert(
        "trained".into(),
        format!("{} {} eps={} epochs={} data={}", a.adv, a.opt, a.eps, a.epochs, a.data.name),
    );
    let model_path = a.out.join("model.safetensors");
    awt_nets::save(&out, &model_path)?;
    let metrics = read_metrics(&a.out.join("metrics.jsonl"))?;
    let last = metrics.last().cloned().unwrap_or(serde_json::Value::Null);
    let mut summary_json = serde_json::json!({
        "config_hash": hash, "git_commit": git_commit(), "arch": arch, "data": a.data.name,
        "train_examples": train_split.len(), "eval_n": a.eval_n.min(ds.test.len()),
        "densities": out.densities()?,
        "final": last, "epochs": metrics.len(), "resumed_from": summary.resumed_from,
        "threads": candle_core::utils::get_num_threads(),
    });
    crate::util::merge_json(&mut summary_json, crate::util::provenance_json(&ds));
    crate::output::write_json(&a.out.join("summary.json"), &summary_json)?;
    drop(folder);
    Ok((net, summary.epochs, a.eval_n.min(ds.test.len())))
}

pub(crate) fn read_metrics(p: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("{}: bad line", p.display()))).collect()
}

pub(crate) fn run(a: TrainArgs) -> Result<()> {
    let (_, epochs, eval_n) = run_training(&a, true)?;
    if let Some(m) = epochs.last() {
        let robust = if m.robust_acc.is_finite() {
            format!(", PGD-{} {:.2}%", a.eval_steps, 100.0 * m.robust_acc)
        } else {
            String::new()
        };
        say!(
            "{}: {} epochs; final clean {:.2}%{robust} on {} test images; model in {}",
            a.out.display(),
            a.epochs,
            100.0 * m.clean_acc,
            eval_n,
            a.out.join("model.safetensors").display()
        );
    } else {
        say!("{}: nothing left to run (all {} epochs were done)", a.out.display(), a.epochs);
    }
    Ok(())
}
