//! `awt train`'s flags, and how they become a checked training configuration and the run's
//! `config.toml` (which `--config` reads back: a run's own file reproduces it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use awt_nets::Arch;
use awt_train::{Objective, OptimizerConfig, Schedule, TrainConfig, TrainError, ValidTrainConfig};
use clap::Args;

use crate::args::{Adv, DataArgs, Opt, Sched};

/// Flags of `awt train` (a `--config FILE.toml` with the same keys may give any of them).
#[derive(Args, Debug, Clone)]
pub(crate) struct TrainArgs {
    /// Read flags from a TOML file (`key = value`, same names as the flags); flags given on the
    /// command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture of a fresh network, or of a foreign --init/--ticket state dict (awt checkpoints
    /// carry theirs).
    #[arg(long, default_value = "lenet-300-100")]
    pub arch: Arch,
    #[command(flatten)]
    pub data: DataArgs,
    /// Start from this checkpoint (its masks, if any, stay fixed).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Start from this ticket (a checkpoint that must hold masks).
    #[arg(long)]
    pub ticket: Option<PathBuf>,
    /// The training objective.
    #[arg(long, value_enum, default_value_t = Adv::Pgd)]
    pub adv: Adv,
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
    /// The optimiser (PyTorch semantics).
    #[arg(long, value_enum, default_value_t = Opt::Sgd)]
    pub opt: Opt,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, default_value_t = 0.0)]
    pub wd: f64,
    /// The learning-rate schedule.
    #[arg(long, value_enum, default_value_t = Sched::Constant)]
    pub schedule: Sched,
    /// multistep: the epochs (0-based) at which the rate is multiplied by --gamma, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<usize>,
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
    /// Also keep the model after every epoch, as epochs/epoch-NNN.safetensors (what `awt dynamics`
    /// compares).
    #[arg(long)]
    pub keep_epochs: bool,
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
    // A configuration is a few hundred bytes: a megabyte bounds it, and a device or FIFO is refused.
    let bytes =
        awt_base::read_bounded(Path::new(path), 1 << 20).with_context(|| format!("--config {path}: cannot read"))?;
    let text = String::from_utf8(bytes).with_context(|| format!("--config {path}: not UTF-8 text"))?;
    let table: toml::Table = text.parse().with_context(|| format!("{path}: not valid TOML"))?;
    let train = <TrainArgs as Args>::augment_args(clap::Command::new("train"));
    let mut flags = Vec::new();
    for (k, v) in table {
        let flag = format!("--{}", k.replace('_', "-"));
        let Some(arg) = train.get_arguments().find(|a| a.get_long() == Some(&flag[2..])).filter(|_| k != "config")
        else {
            bail!(
                "{path}: key `{k}` is not a setting of awt train (the keys are its flags' names: epochs, lr, adv, ...)"
            );
        };
        let list = arg.get_value_delimiter().is_some();
        let switch = !arg.get_action().takes_values();
        let value = match v {
            toml::Value::Boolean(true) if switch => None,
            toml::Value::Boolean(false) if switch => continue,
            other if switch => bail!("{path}: key `{k}` is a switch: true or false, not {other}"),
            toml::Value::String(s) => Some(s),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            // Only a list setting (`milestones`) takes a list; `eps = [0.1]` was read as 0.1.
            toml::Value::Array(a) if list => Some(a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")),
            other => {
                bail!("{path}: key `{k}` cannot be {other} (a {} setting)", if list { "list" } else { "one-value" })
            }
        };
        let one: Vec<String> = std::iter::once(flag).chain(value).collect();
        // Each value is checked alone, so a bad one is reported by its file and key, not only as a flag.
        let argv = ["train"].into_iter().map(String::from).chain(one.clone()).chain(["--out".into(), "x".into()]);
        if let Err(e) = train.clone().try_get_matches_from(argv) {
            use clap::error::ErrorKind::{InvalidValue, ValueValidation};
            if matches!(e.kind(), InvalidValue | ValueValidation) {
                let why = e.to_string();
                bail!("{path}: key `{k}`: {}", why.lines().next().unwrap_or("").trim_start_matches("error: "));
            }
        }
        flags.extend(one);
    }
    let mut out: Vec<String> = args[..pos].to_vec();
    // Config flags go right after the subcommand, before the explicit ones.
    let sub = out.iter().position(|a| a == "train").map(|i| i + 1).unwrap_or(out.len());
    let rest: Vec<String> = args[pos + 2..].to_vec();
    out.splice(sub..sub, flags);
    out.extend(rest);
    Ok(out)
}

impl TrainArgs {
    /// Every flag at its default, with the run folder `out` (for commands that train as one of
    /// their steps, such as IMP rounds; they then set the fields they need, typed).
    pub(crate) fn with_defaults(out: &Path) -> Result<TrainArgs> {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            t: TrainArgs,
        }
        let args = [std::ffi::OsString::from("train"), "--out".into(), out.as_os_str().to_os_string()];
        Ok(<Wrap as clap::Parser>::try_parse_from(args)?.t)
    }
}

/// The run's configuration as written to `config.toml`: the flags' names and values, absent
/// options left out, so that `--config <run>/config.toml` reproduces the run.
#[derive(serde::Serialize)]
struct RunToml<'a> {
    arch: String,
    data: &'a str,
    /// `--validation`: absent without it, so earlier runs keep their configuration and hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    validation: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<String>,
    adv: Adv,
    eps: f64,
    steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    step_size: Option<f64>,
    beta: f64,
    epochs: usize,
    batch: usize,
    opt: Opt,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    wd: f64,
    schedule: Sched,
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    milestones: &'a [usize],
    gamma: f64,
    warmup: f64,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    train_limit: Option<usize>,
    eval_n: usize,
    eval_steps: usize,
    keep_best: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keep_epochs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_kernel: Option<String>,
}

impl TrainArgs {
    /// The run's configuration as TOML (the file written to the run folder), without `out`/`resume`.
    pub(crate) fn canonical(&self, arch: &Arch) -> Result<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let t = RunToml {
            arch: arch.to_string(),
            data: &self.data.name,
            validation: self.data.validation,
            init: path(&self.init),
            ticket: path(&self.ticket),
            adv: self.adv,
            eps: self.eps,
            steps: self.steps,
            step_size: self.step_size,
            beta: self.beta,
            epochs: self.epochs,
            batch: self.batch,
            opt: self.opt,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            wd: self.wd,
            schedule: self.schedule,
            milestones: &self.milestones,
            gamma: self.gamma,
            warmup: self.warmup,
            seed: self.seed,
            train_limit: self.train_limit,
            eval_n: self.eval_n,
            eval_steps: self.eval_steps,
            keep_best: self.keep_best,
            keep_epochs: self.keep_epochs,
            track_kernel: path(&self.track_kernel),
        };
        Ok(toml::to_string(&t)?)
    }

    /// The library configuration, validated.
    pub(crate) fn train_config(&self) -> Result<ValidTrainConfig> {
        // Checked before the step size is derived from it, so the error names the flag given.
        if self.adv != Adv::None && !(self.eps.is_finite() && self.eps > 0.0) {
            bail!(
                "--eps must be > 0 with --adv {} (the attack's radius in pixels), got {}",
                crate::args::value_name(&self.adv),
                self.eps
            );
        }
        if self.schedule == Sched::Multistep && self.milestones.is_empty() {
            bail!(
                "--schedule multistep needs --milestones (the epochs at which the learning rate is multiplied by --gamma)"
            );
        }
        // The command-line check (`parse`) refuses them first; this also covers configurations built in code.
        let schedule = crate::args::value_name(&self.schedule);
        if let Some(why) =
            awt_runs::reads::unread("train", "--milestones", &schedule).filter(|_| !self.milestones.is_empty())
        {
            bail!(why);
        }
        let step = |default: f64| self.step_size.unwrap_or(default);
        let objective = match self.adv {
            Adv::None => Objective::Natural,
            Adv::Pgd => Objective::Pgd {
                eps: self.eps,
                steps: self.steps,
                step_size: step(awt_attack::Pgd::train_step(self.eps)),
            },
            Adv::Fgsm => Objective::Fgsm { eps: self.eps, step_size: step(1.25 * self.eps) },
            Adv::Trades => Objective::Trades {
                eps: self.eps,
                steps: self.steps,
                step_size: step(awt_attack::Pgd::train_step(self.eps)),
                beta: self.beta,
            },
        };
        let adam =
            |decoupled| OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: self.wd, decoupled };
        let optimizer = match self.opt {
            Opt::Sgd => OptimizerConfig::Sgd {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: self.nesterov,
                weight_decay: self.wd,
            },
            Opt::Adam => adam(false),
            Opt::Adamw => adam(true),
        };
        let schedule = match self.schedule {
            Sched::Constant => Schedule::Constant,
            Sched::Cosine => Schedule::Cosine,
            Sched::Onecycle => Schedule::OneCycle { warmup: self.warmup },
            Sched::Multistep => Schedule::MultiStep { milestones: self.milestones.clone(), gamma: self.gamma },
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
        cfg.validate().map_err(flag_error)
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
