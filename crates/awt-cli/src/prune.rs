//! `awt prune` (pruning at initialisation) and `awt ticket` (the NTT / AWT searches).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use awt_base::Staged;
use awt_nets::Net;
use awt_prune::{Allocation, scores, select};
use awt_ticket::{AdvSource, InputMix, Method, SearchConfig, WeightsFrom};
use candle_core::{DType, Device, Module, Tensor, Var};
use clap::Args;

use crate::output::say;
use crate::util::git_commit;

/// Flags of `awt prune`.
#[derive(Args, Debug, Clone)]
pub(crate) struct PruneArgs {
    /// random, magnitude, snip, grasp, synflow (at initialisation), or hydra (on an adversarially
    /// pretrained --model); one IMP round is magnitude with --rewind.
    #[arg(long)]
    pub method: String,
    /// Fraction of weights kept, in (0, 1].
    #[arg(long)]
    pub density: f64,
    /// uniform (per layer, the paper's default), global or erk.
    #[arg(long, default_value = "uniform")]
    pub allocation: String,
    /// The dense network at initialisation.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub arch: Option<String>,
    #[command(flatten)]
    pub data: crate::util::DataArgs,
    /// SNIP and GraSP score one batch of this many examples from the training split of --data.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// SynFlow rounds.
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Lottery-ticket rewinding (one round of IMP): score the (trained, possibly already masked)
    /// --model by magnitude among its kept weights, and write the mask over this checkpoint's
    /// weights (usually the initialisation). Only with --method magnitude.
    #[arg(long)]
    pub rewind: Option<PathBuf>,
    /// HYDRA: epochs of score optimisation under the PGD-AT loss (--model must be adversarially pretrained).
    #[arg(long, default_value_t = 2)]
    pub hydra_epochs: usize,
    /// HYDRA: score learning rate (SGD, momentum 0.9, cosine).
    #[arg(long, default_value_t = 0.1)]
    pub hydra_lr: f64,
    /// HYDRA: ℓ∞ radius of the robust loss.
    #[arg(long, default_value_t = 0.1)]
    pub eps: f64,
    /// HYDRA: PGD steps of the robust loss (step size ε/4).
    #[arg(long, default_value_t = 10)]
    pub attack_steps: usize,
    /// HYDRA / IMP-AT: use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// IMP-AT: rounds of (PGD-AT training, magnitude pruning to density^(r/R), rewind to --model).
    #[arg(long, default_value_t = 3)]
    pub imp_rounds: usize,
    /// IMP-AT: training epochs per round (Adam 1e-3, batch 128, PGD with --eps and --attack-steps).
    #[arg(long, default_value_t = 2)]
    pub imp_epochs: usize,
    #[arg(long)]
    pub out: PathBuf,
}

fn weights(net: &Net) -> BTreeMap<String, Tensor> {
    net.weight_names().into_iter().map(|k| (k.clone(), net.param(&k).expect("weight").as_tensor().clone())).collect()
}

fn ce(net: &Net, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    awt_attack::per_example_loss(&net.forward(x)?, y, None, awt_attack::LossKind::CrossEntropy)?.mean_all()
}

/// Masks for `a.method` on the dense `net`.
pub(crate) fn prune_masks(net: &Net, a: &PruneArgs) -> Result<BTreeMap<String, Tensor>> {
    let alloc = Allocation::parse(&a.allocation).map_err(|e| anyhow::anyhow!("--allocation: {e}"))?;
    let batch = || -> Result<(Tensor, Tensor)> {
        let ds = a.data.load_for(net)?;
        let idx: Vec<usize> = awt_data::epoch_order(ds.train.len(), a.seed, 0).into_iter().take(a.batch).collect();
        let (x, y) = ds.train.batch(&idx, &Device::Cpu)?;
        Ok((x.to_dtype(net.dtype())?, y))
    };
    let vars: BTreeMap<String, Var> =
        net.weight_names().into_iter().map(|k| (k.clone(), net.param(&k).expect("weight").clone())).collect();
    let masks = match a.method.as_str() {
        "random" => select(&scores::random(&weights(net), a.seed)?, a.density, alloc)?,
        "magnitude" => select(&scores::magnitude(&weights(net))?, a.density, alloc)?,
        "snip" => {
            let (x, y) = batch()?;
            select(&scores::snip(&|| ce(net, &x, &y), &vars)?, a.density, alloc)?
        }
        "grasp" => {
            let (x, y) = batch()?;
            select(&scores::grasp(&|| ce(net, &x, &y), &vars, 1e-3)?, a.density, alloc)?
        }
        "synflow" => scores::synflow(&net.stages(), &net.arch().input_shape(), a.density, alloc, a.rounds)?,
        "imp-at" => bail!("internal: imp-at is handled by run_imp"),
        "hydra" => bail!("internal: hydra is handled by run_hydra"),
        other => {
            bail!("--method: unknown pruning method `{other}`: expected random, magnitude, snip, grasp or synflow")
        }
    };
    Ok(masks)
}

/// One IMP round: magnitude masks of the trained `--model` (within its masks), over the weights of `--rewind`.
fn run_rewind(a: &PruneArgs, rewind: &std::path::Path) -> Result<()> {
    if a.method != "magnitude" {
        bail!("--rewind works with --method magnitude (iterative magnitude pruning), not `{}`", a.method);
    }
    let arch = a.arch.as_deref().map(crate::commands::parse_arch).transpose()?;
    let trained = awt_nets::load(&a.model, arch.as_ref(), DType::F32, &Device::Cpu)?.net;
    let mut net = awt_nets::load(rewind, arch.as_ref(), DType::F32, &Device::Cpu)?.net;
    if net.arch() != trained.arch() {
        bail!("--rewind {} is a {}, --model {} a {}", rewind.display(), net.arch(), a.model.display(), trained.arch());
    }
    let alloc = Allocation::parse(&a.allocation).map_err(|e| anyhow::anyhow!("--allocation: {e}"))?;
    let mut sc = scores::magnitude(&weights(&trained))?;
    for (k, m) in trained.masks() {
        let s = sc[k].mul(m)?;
        sc.insert(k.clone(), s);
    }
    let before = trained.densities()?;
    for (k, d) in &before {
        if a.density > *d + 1e-12 {
            bail!("--density {} is above the current density {d:.4} of `{k}`: IMP only removes weights", a.density);
        }
    }
    let masks = select(&sc, a.density, alloc)?;
    net.clear_masks();
    for (k, m) in &masks {
        net.set_mask(k, m)?;
    }
    net.apply_masks()?;
    net.meta.insert("method".into(), "imp-at".into());
    net.meta.insert("density".into(), a.density.to_string());
    net.meta.insert("rewound_to".into(), rewind.display().to_string());
    net.meta.insert("scored_from".into(), a.model.display().to_string());
    net.meta.insert("git_commit".into(), git_commit().into());
    awt_nets::save(&net, &a.out)?;
    report(&net, &a.out)
}

/// HYDRA's pruning stage on an adversarially pretrained --model.
fn run_hydra(a: &PruneArgs) -> Result<()> {
    let arch = a.arch.as_deref().map(crate::commands::parse_arch).transpose()?;
    let net = awt_nets::load(&a.model, arch.as_ref(), DType::F32, &Device::Cpu)?.net;
    let ds = a.data.load_for(&net)?;
    let train = match a.train_limit {
        Some(n) => ds.train.subset(0, n.min(ds.train.len()))?,
        None => ds.train.clone(),
    };
    let cfg = awt_ticket::HydraConfig {
        density: a.density,
        epochs: a.hydra_epochs,
        lr: a.hydra_lr,
        eps: a.eps,
        steps: a.attack_steps,
        step_size: 0.25 * a.eps,
        batch: 128,
        seed: a.seed,
    };
    let work = a.out.with_extension("hydra");
    let _ = std::fs::remove_dir_all(&work);
    let mut ticket = awt_ticket::hydra(&net, &train, &ds.test, &cfg, &work)?;
    ticket.meta.insert("git_commit".into(), git_commit().into());
    ticket.meta.insert("pretrained".into(), a.model.display().to_string());
    awt_nets::save(&ticket, &a.out)?;
    report(&ticket, &a.out)
}

/// IMP-AT as one command: rounds of adversarial training and magnitude pruning with rewinding to
/// the initialisation `--model` (lottery tickets); work folders sit beside `--out`.
fn run_imp(a: &PruneArgs) -> Result<()> {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        t: crate::train::TrainArgs,
    }
    if a.imp_rounds == 0 {
        bail!("--imp-rounds must be ≥ 1");
    }
    let work = a.out.with_extension("imp");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut current = a.model.clone();
    for r in 1..=a.imp_rounds {
        let dir = work.join(format!("round{r}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut args: Vec<String> = vec![
            "train".into(),
            if r == 1 { "--init" } else { "--ticket" }.into(),
            current.display().to_string(),
            "--data".into(),
            a.data.name.clone(),
            "--adv".into(),
            "pgd".into(),
            "--eps".into(),
            a.eps.to_string(),
            "--steps".into(),
            a.attack_steps.to_string(),
            "--epochs".into(),
            a.imp_epochs.to_string(),
            "--opt".into(),
            "adam".into(),
            "--lr".into(),
            "0.001".into(),
            "--eval-n".into(),
            "200".into(),
            "--eval-steps".into(),
            "10".into(),
            "--seed".into(),
            a.seed.to_string(),
            "--quiet".into(),
            "--out".into(),
            dir.display().to_string(),
        ];
        if let Some(n) = a.train_limit {
            args.extend(["--train-limit".into(), n.to_string()]);
        }
        if let Some(d) = &a.data.data_dir {
            args.extend(["--data-dir".into(), d.display().to_string()]);
        }
        let t = <Wrap as clap::Parser>::try_parse_from(&args).map_err(|e| anyhow::anyhow!("{e}"))?.t;
        crate::train::run_training(&t, false)?;
        let next = work.join(format!("round{r}-ticket.safetensors"));
        let round = PruneArgs {
            method: "magnitude".into(),
            density: a.density.powf(r as f64 / a.imp_rounds as f64),
            model: dir.join("model.safetensors"),
            rewind: Some(a.model.clone()),
            out: if r == a.imp_rounds { a.out.clone() } else { next.clone() },
            ..a.clone()
        };
        run_rewind(&round, &a.model)?;
        current = next;
    }
    Ok(())
}

/// `--density` must be a fraction of weights to keep.
fn check_density(d: f64) -> Result<()> {
    if !(d > 0.0 && d <= 1.0) {
        bail!("--density must be in (0, 1], got {d}");
    }
    Ok(())
}

pub(crate) fn run_prune(a: PruneArgs) -> Result<()> {
    check_density(a.density)?;
    let mut inputs = vec![("--model", a.model.as_path())];
    if let Some(r) = &a.rewind {
        inputs.push(("--rewind", r.as_path()));
    }
    crate::util::refuse_overwriting_inputs("--out", &a.out, &inputs)?;
    if a.batch == 0 {
        bail!("--batch must be ≥ 1 (examples scored by SNIP and GraSP)");
    }
    if let Some(r) = a.rewind.clone() {
        return run_rewind(&a, &r);
    }
    if a.method == "imp-at" {
        return run_imp(&a);
    }
    if a.method == "hydra" {
        return run_hydra(&a);
    }
    let arch = a.arch.as_deref().map(crate::commands::parse_arch).transpose()?;
    let mut net = awt_nets::load(&a.model, arch.as_ref(), DType::F32, &Device::Cpu)?.net;
    if !net.masks().is_empty() {
        bail!("{}: already holds masks; prune a dense initialisation", a.model.display());
    }
    let masks = prune_masks(&net, &a)?;
    for (k, m) in &masks {
        net.set_mask(k, m)?;
    }
    net.apply_masks()?;
    net.meta.insert("method".into(), a.method.clone());
    net.meta.insert("density".into(), a.density.to_string());
    net.meta.insert("allocation".into(), a.allocation.clone());
    net.meta.insert("prune_seed".into(), a.seed.to_string());
    net.meta.insert("git_commit".into(), git_commit().into());
    awt_nets::save(&net, &a.out)?;
    report(&net, &a.out)
}

fn report(net: &Net, out: &std::path::Path) -> Result<()> {
    let d = net.densities()?;
    let per: Vec<String> = d.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    say!(
        "wrote {} ({}, method {}): densities {}",
        out.display(),
        net.arch(),
        net.meta.get("method").map(String::as_str).unwrap_or("?"),
        per.join(", ")
    );
    Ok(())
}

/// Flags of `awt ticket`.
#[derive(Args, Debug, Clone)]
pub(crate) struct TicketArgs {
    /// awt (adversarial inputs) or ntt (clean inputs).
    #[arg(long, default_value = "awt")]
    pub method: String,
    #[arg(long)]
    pub density: f64,
    /// The dense network at initialisation (the teacher).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub arch: Option<String>,
    #[command(flatten)]
    pub data: crate::util::DataArgs,
    /// Search length in passes over the data (or use --steps).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Search length in optimiser steps.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-3)]
    pub lambda_ker: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub lambda_l2: f64,
    /// Re-select the mask every F steps.
    #[arg(long, default_value_t = 100)]
    pub mask_every: usize,
    #[arg(long, default_value_t = 0.1)]
    pub eps: f64,
    #[arg(long, default_value_t = 10)]
    pub attack_steps: usize,
    #[arg(long)]
    pub attack_step_size: Option<f64>,
    /// teacher, student or both.
    #[arg(long, default_value = "teacher")]
    pub adv_source: String,
    /// adversarial or clean+adversarial.
    #[arg(long, default_value = "adversarial")]
    pub inputs: String,
    /// transferred or rewind.
    #[arg(long, default_value = "transferred")]
    pub weights: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub quiet: bool,
}

impl TicketArgs {
    pub(crate) fn config(&self, train_len: usize) -> Result<SearchConfig> {
        let method = match self.method.as_str() {
            "awt" => Method::Awt,
            "ntt" => Method::Ntt,
            other => bail!("--method: unknown search `{other}`: expected awt or ntt"),
        };
        if self.batch < 2 {
            bail!("--batch must be ≥ 2 (the kernel compares its two halves), got {}", self.batch);
        }
        let steps = match (self.steps, self.epochs) {
            (Some(0), None) => bail!("--steps must be ≥ 1"),
            (Some(s), None) => s,
            (None, Some(e)) if !(e.is_finite() && e > 0.0) => bail!("--epochs must be > 0, got {e}"),
            (None, Some(e)) => match (e * (train_len / self.batch) as f64).round() as usize {
                0 => bail!("--epochs {e}: less than one step of --batch {} on {train_len} examples", self.batch),
                s => s,
            },
            (None, None) => bail!("give the search length with --epochs or --steps"),
            (Some(_), Some(_)) => bail!("--epochs and --steps are exclusive"),
        };
        check_density(self.density)?;
        Ok(SearchConfig {
            method,
            density: self.density,
            steps,
            batch: self.batch,
            lr: self.lr,
            lambda_ker: self.lambda_ker,
            lambda_l2: self.lambda_l2,
            mask_every: self.mask_every,
            eps: self.eps,
            attack_steps: self.attack_steps,
            attack_step_size: self.attack_step_size.unwrap_or(0.25 * self.eps),
            adv_source: match self.adv_source.as_str() {
                "teacher" => AdvSource::Teacher,
                "student" => AdvSource::Student,
                "both" => AdvSource::Both,
                other => bail!("--adv-source: expected teacher, student or both, got `{other}`"),
            },
            inputs: match self.inputs.as_str() {
                "adversarial" => InputMix::Adversarial,
                "clean+adversarial" => InputMix::CleanAndAdversarial,
                other => bail!("--inputs: expected adversarial or clean+adversarial, got `{other}`"),
            },
            weights: match self.weights.as_str() {
                "transferred" => WeightsFrom::Transferred,
                "rewind" => WeightsFrom::Rewind,
                other => bail!("--weights: expected transferred or rewind, got `{other}`"),
            },
            seed: self.seed,
        })
    }
}

pub(crate) fn run_ticket(a: TicketArgs) -> Result<()> {
    let log_path = a.out.with_extension("search.jsonl");
    for (flag, out) in [("--out", &a.out), ("--out (its search log)", &log_path)] {
        crate::util::refuse_overwriting_inputs(flag, out, &[("--model", &a.model)])?;
    }
    let arch = a.arch.as_deref().map(crate::commands::parse_arch).transpose()?;
    let teacher = awt_nets::load(&a.model, arch.as_ref(), DType::F32, &Device::Cpu)?.net;
    let ds = a.data.load_for(&teacher)?;
    let cfg = a.config(ds.train.len())?;
    let mut log_file = std::io::BufWriter::new(
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?,
    );
    let bar = crate::output::progress(cfg.steps as u64, &a.method);
    if a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut write_err = None;
    let t = awt_ticket::search(&teacher, &ds.train, &cfg, &mut |l| {
        bar.inc(1);
        bar.set_message(format!("kernel dist {:.3} output dist {:.3}", l.kernel_distance, l.output_distance));
        if let Err(e) = writeln!(log_file, "{}", l.json()) {
            write_err = Some(e);
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        bail!("cannot write {}: {e}", log_path.display());
    }
    log_file.flush()?;
    let mut net = t.net;
    net.meta.insert("git_commit".into(), git_commit().into());
    awt_nets::save(&net, &a.out)?;
    if let (Some(first), Some(last)) = (t.log.first(), t.log.last()) {
        say!(
            "{} search, {} steps: kernel distance {:.3} → {:.3}, output distance {:.3} → {:.3}; log in {}",
            a.method,
            cfg.steps,
            first.kernel_distance,
            last.kernel_distance,
            first.output_distance,
            last.output_distance,
            log_path.display()
        );
    }
    report(&net, &a.out)
}
