//! `awt ticket`: the NTT and AWT searches, writing the ticket and its search log.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use awt_nets::Arch;
use awt_ticket::{AdvSource, InputMix, Method, SearchConfig, ValidSearchConfig, WeightsFrom};
use candle_core::{DType, Device};
use clap::Args;

use crate::args::{AdvSourceArg, DataArgs, InputsArg, SearchMethod, WeightsArg, value_name};
use crate::output::{git_commit, say};

/// Flags of `awt ticket`.
#[derive(Args, Debug, Clone)]
pub(crate) struct TicketArgs {
    /// The search.
    #[arg(long, value_enum, default_value_t = SearchMethod::Awt)]
    pub method: SearchMethod,
    #[arg(long)]
    pub density: f64,
    /// The dense network at initialisation (the teacher).
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture of a foreign state dict.
    #[arg(long)]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub data: DataArgs,
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
    /// Whose PGD examples the AWT loss uses.
    #[arg(long, value_enum, default_value_t = AdvSourceArg::Teacher)]
    pub adv_source: AdvSourceArg,
    /// Which inputs enter the loss.
    #[arg(long, value_enum, default_value_t = InputsArg::Adversarial)]
    pub inputs: InputsArg,
    /// Which weights the ticket keeps.
    #[arg(long, value_enum, default_value_t = WeightsArg::Transferred)]
    pub weights: WeightsArg,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub quiet: bool,
}

impl TicketArgs {
    pub(crate) fn config(&self, train_len: usize) -> Result<ValidSearchConfig> {
        let method = match self.method {
            SearchMethod::Awt => Method::Awt,
            SearchMethod::Ntt => Method::Ntt,
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
        crate::prune::check_density(self.density)?;
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
            attack_step_size: self.attack_step_size.unwrap_or(awt_attack::Pgd::train_step(self.eps)),
            adv_source: match self.adv_source {
                AdvSourceArg::Teacher => AdvSource::Teacher,
                AdvSourceArg::Student => AdvSource::Student,
                AdvSourceArg::Both => AdvSource::Both,
            },
            inputs: match self.inputs {
                InputsArg::Adversarial => InputMix::Adversarial,
                InputsArg::CleanAdversarial => InputMix::CleanAndAdversarial,
            },
            weights: match self.weights {
                WeightsArg::Transferred => WeightsFrom::Transferred,
                WeightsArg::Rewind => WeightsFrom::Rewind,
            },
            seed: self.seed,
        }
        .validate()?)
    }
}

pub(crate) fn run_ticket(a: TicketArgs) -> Result<()> {
    let log_path = a.out.with_extension("search.jsonl");
    for (flag, out) in [("--out", &a.out), ("--out (its search log)", &log_path)] {
        crate::files::refuse_overwriting_inputs(flag, out, &[("--model", &a.model)])?;
    }
    let teacher = awt_nets::load(&a.model, a.arch.as_ref(), DType::F32, &Device::Cpu)?.net;
    let ds = a.data.load_for(&teacher)?;
    let cfg = a.config(ds.train.len())?;
    let mut log_file = std::io::BufWriter::new(
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?,
    );
    let bar = crate::output::progress(cfg.steps as u64, &value_name(&a.method));
    if a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut write_err = None;
    let t = awt_ticket::search(&teacher, &ds.train, &cfg, &mut |l| {
        bar.inc(1);
        bar.set_message(format!("kernel dist {:.3} output dist {:.3}", l.kernel_distance, l.output_distance));
        let line = serde_json::to_string(l).map_err(std::io::Error::other);
        if let Err(e) = line.and_then(|line| writeln!(log_file, "{line}")) {
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
            value_name(&a.method),
            cfg.steps,
            first.kernel_distance,
            last.kernel_distance,
            first.output_distance,
            last.output_distance,
            log_path.display()
        );
    }
    crate::prune::report(&net, &a.out)
}
