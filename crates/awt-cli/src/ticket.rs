//! `awt ticket`: the NTT and AWT searches, writing the ticket and its search log.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use awt_nets::Arch;
use awt_runs::layout;
use awt_ticket::{AdvSource, InputMix, Method, SearchConfig, SearchLog, ValidSearchConfig, WeightsFrom};
use candle_core::{DType, Device};
use clap::Args;

use crate::args::{AdvSourceArg, DataArgs, InputsArg, OutputLayerArg, SearchMethod, WeightsArg, value_name};
use crate::files::beside;
use crate::output::{git_commit, say};

/// Flags of `awt ticket`.
#[derive(Args, Debug, Clone)]
pub(crate) struct TicketArgs {
    /// The search.
    #[arg(long, value_enum, default_value_t = SearchMethod::Awt)]
    pub method: SearchMethod,
    /// Fraction of weights kept, in (0, 1].
    #[arg(long)]
    pub density: awt_runs::Density,
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
    /// Prune the output layer like the others, or keep it dense (counted in --density).
    #[arg(long, value_enum, default_value_t = OutputLayerArg::Pruned)]
    pub output_layer: OutputLayerArg,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub quiet: bool,
    /// Save the search's state every N steps beside the ticket (`<out>.search.state.safetensors`,
    /// removed when the ticket is written); 0: never.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Continue the search from its saved state (same flags, model and data), bit-identically.
    #[arg(long)]
    pub resume: bool,
    /// With --weights rewind: do not search again, rewind this ticket, made by the same search with
    /// transferred weights from the same --model (the result, and its log, are the search's own).
    #[arg(long, value_name = "TICKET")]
    pub rewind_from: Option<PathBuf>,
    /// Keep in each layer as many weights as this masked checkpoint of the same architecture keeps
    /// there (e.g. an `awt prune` output: another method's allocation over layers), instead of
    /// --density in every pruned layer; its overall density must be --density.
    #[arg(long, value_name = "MASKED")]
    pub layer_densities_from: Option<PathBuf>,
}

impl TicketArgs {
    pub(crate) fn config(&self, train_len: usize, arch: &Arch, dev: &Device) -> Result<ValidSearchConfig> {
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
        let cfg = SearchConfig {
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
            keep_dense: self.output_layer.keep_dense(arch),
            layer_keep: match &self.layer_densities_from {
                Some(p) => crate::counts::layer_counts(p, arch, dev)?,
                None => Default::default(),
            },
        };
        // f32 throughout the search; refused before the search allocates its signals and kernels.
        crate::output::check_memory(&format!("--batch {}", self.batch), awt_ticket::memory_estimate(arch, &cfg, 4))?;
        Ok(cfg.validate()?)
    }
}

/// Keeps the search log's lines before `step` (a search resumed there writes the rest again) and
/// returns the first line's kernel and output distances.
fn truncate_log(path: &std::path::Path, step: usize) -> Result<Option<(f64, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot resume: cannot read {}", path.display()))?;
    let mut kept = String::new();
    let mut first = None;
    for (i, line) in text.lines().enumerate() {
        let v: SearchLog = match serde_json::from_str(line) {
            Ok(v) => v,
            // A line cut short by the interruption ends the usable log.
            Err(_) => break,
        };
        if v.step != i as u64 || i >= step {
            break;
        }
        if i == 0 {
            first = Some((v.kernel_distance, v.output_distance));
        }
        kept += line;
        kept.push('\n');
    }
    let have = kept.lines().count();
    if have < step {
        bail!("cannot resume: {} holds {have} complete steps, the saved state is at step {step}", path.display());
    }
    awt_base::write_atomic(path, kept.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(first)
}

pub(crate) fn run_ticket(a: TicketArgs, dev: &Device) -> Result<()> {
    let log_path = beside(&a.out, layout::SEARCH_LOG);
    let state_path = beside(&a.out, layout::SEARCH_STATE);
    let mut inputs = vec![("--model", a.model.as_path())];
    inputs.extend(a.layer_densities_from.as_deref().map(|p| ("--layer-densities-from", p)));
    let _owned = crate::files::own("--out", &a.out, crate::files::Kind::MODEL, &[&log_path, &state_path], &inputs)?;
    crate::provenance::warn_on_training(&a.model, &format!("{}'s search", value_name(&a.method)), false);
    let teacher = awt_nets::load(&a.model, a.arch.as_ref(), DType::F32, dev)?.net;
    let ds = a.data.load_for(&teacher)?;
    let cfg = a.config(ds.train.len(), teacher.arch(), dev)?;
    // What a saved state must match to be resumed: every setting, the teacher's bytes and the data.
    let model_bytes = std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let teacher_hash = crate::output::model_hash(&a.model, &model_bytes)?;
    let legacy_hash = crate::output::legacy_text_hash(&model_bytes);
    if let Some(from) = &a.rewind_from {
        return rewind_from(&a, from, &teacher, &cfg, (&teacher_hash, &legacy_hash), &log_path);
    }
    // One `key=value` line per setting, so a mismatched resume names the settings that differ.
    let mut fields: Vec<String> = Vec::new();
    for l in format!("{:#?}", *cfg).lines().skip(1).filter(|l| *l != "}") {
        // A field starts at the first indent; deeper lines continue its value (a list's items).
        match l.strip_prefix("    ").filter(|r| !r.starts_with(' ')).and_then(|r| r.split_once(": ")) {
            Some((k, v)) => fields.push(format!("{k}={}", v.trim_end_matches(','))),
            None => {
                if let Some(last) = fields.last_mut() {
                    last.push_str(l.trim());
                }
            }
        }
    }
    let mut identity: String = fields.iter().map(|f| format!("{f}\n")).collect();
    identity += &format!("teacher={}\ndata={}\ntrain={}\n", teacher_hash, ds.name, ds.train.len());
    let (resume, mut first) = if a.resume {
        if !state_path.exists() {
            bail!(
                "--resume: no saved search state at {} (the search has not checkpointed yet, or it finished)",
                state_path.display()
            );
        }
        let st = match awt_ticket::SearchState::load(&state_path, &identity, dev) {
            Ok(st) => st,
            // A state an older build saved names the teacher by its legacy hash: the same search.
            Err(e) => {
                let old = identity.replace(&format!("teacher={teacher_hash}\n"), &format!("teacher={legacy_hash}\n"));
                awt_ticket::SearchState::load(&state_path, &old, dev).map_err(|_| e)?
            }
        };
        let first = truncate_log(&log_path, st.step)?;
        (Some(st), first)
    } else {
        if state_path.exists() {
            eprintln!(
                "starting the search afresh: the saved state {} will be replaced (--resume continues it)",
                state_path.display()
            );
        }
        (None, None)
    };
    let start = resume.as_ref().map_or(0, |s| s.step);
    // A fresh search replaces an earlier search's log only once it has a step to log: a search
    // refused by its settings (a density that empties a layer) leaves the earlier log whole. Whether
    // the log can be written is still found before the work.
    let open_err = |e: std::io::Error| anyhow::anyhow!("cannot open {}: {e}", log_path.display());
    let log = if resume.is_some() {
        Some(std::fs::OpenOptions::new().append(true).open(&log_path).map_err(open_err)?)
    } else {
        if std::fs::symlink_metadata(&log_path).is_ok() {
            std::fs::OpenOptions::new().write(true).open(&log_path).map_err(open_err)?;
        }
        None
    };
    let log_file = std::cell::RefCell::new(log.map(std::io::BufWriter::new));
    let write_line = |line: &str| -> std::io::Result<()> {
        let mut f = log_file.borrow_mut();
        let f = match &mut *f {
            Some(f) => f,
            None => f.insert(std::io::BufWriter::new(std::fs::File::create(&log_path)?)),
        };
        writeln!(f, "{line}")
    };
    let flush_log = || log_file.borrow_mut().as_mut().map_or(Ok(()), |f| f.flush());
    let bar = crate::output::progress(cfg.steps as u64, &value_name(&a.method));
    bar.set_position(start as u64);
    if a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let log_err = |e: std::io::Error| awt_ticket::SearchError::file_io(&log_path, "cannot write", e);
    let mut write_err = None;
    let mut save = |st: &awt_ticket::SearchState| {
        // The log reaches the disk before a state that claims its steps.
        flush_log().map_err(log_err)?;
        st.save(&state_path, &identity)
    };
    let ck = awt_ticket::Checkpoints { every: a.checkpoint_every, resume, save: &mut save };
    let t = awt_ticket::search_resumable(&teacher, &ds.train, &cfg, ck, &mut |l| {
        bar.inc(1);
        bar.set_message(format!("kernel dist {:.3} output dist {:.3}", l.kernel_distance, l.output_distance));
        let line = serde_json::to_string(l).map_err(std::io::Error::other);
        if let Err(e) = line.and_then(|line| write_line(&line)) {
            write_err = Some(e);
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        bail!("cannot write {}: {e}", log_path.display());
    }
    flush_log().with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut net = t.net;
    net.meta.insert("git_commit".into(), git_commit().into());
    net.meta.insert("teacher".into(), teacher_hash);
    awt_nets::save(&net, &a.out)?;
    // The ticket is written: its state is no longer needed.
    if state_path.exists() {
        std::fs::remove_file(&state_path).with_context(|| format!("cannot remove {}", state_path.display()))?;
    }
    if first.is_none() {
        first = t.log.first().map(|l| (l.kernel_distance, l.output_distance));
    }
    if let (Some((k0, o0)), Some(last)) = (first, t.log.last()) {
        say!(
            "{} search, {} steps{}: kernel distance {k0:.3} → {:.3}, output distance {o0:.3} → {:.3}; log in {}",
            value_name(&a.method),
            cfg.steps,
            if start > 0 { format!(" (resumed at step {start})") } else { String::new() },
            last.kernel_distance,
            last.output_distance,
            log_path.display()
        );
    }
    crate::output::report_pruned(&net, &a.out)
}

/// `--rewind-from`: the rewound ticket of a finished search with transferred weights, without
/// searching again; its search log is copied beside the output, since it is this search's log.
fn rewind_from(
    a: &TicketArgs,
    from: &std::path::Path,
    teacher: &awt_nets::Net,
    cfg: &ValidSearchConfig,
    (teacher_hash, legacy_hash): (&str, &str),
    log_path: &std::path::Path,
) -> Result<()> {
    if a.weights != WeightsArg::Rewind {
        bail!("--rewind-from needs --weights rewind");
    }
    if a.resume {
        bail!("--rewind-from does not search, so there is nothing to --resume");
    }
    // Tickets are written atomically, so a finished one is read whole without taking its lock.
    crate::files::refuse_overwriting_inputs("--out", &a.out, &[("--rewind-from", from)])?;
    let transferred = awt_nets::load(from, a.arch.as_ref(), DType::F32, &teacher.device())?.net;
    // A ticket an older build made names its teacher by the legacy hash.
    if !transferred.meta.get("teacher").is_some_and(|t| t == teacher_hash || t == legacy_hash) {
        bail!("--rewind-from {}: its search did not start from --model {}", from.display(), a.model.display());
    }
    let mut net = awt_ticket::rewind_ticket(teacher, &transferred, cfg)
        .with_context(|| format!("--rewind-from {}", from.display()))?;
    net.meta.insert("git_commit".into(), git_commit().into());
    net.meta.insert("teacher".into(), teacher_hash.to_string());
    let from_log = beside(from, layout::SEARCH_LOG);
    let log = std::fs::read(&from_log)
        .with_context(|| format!("--rewind-from: cannot read its log {}", from_log.display()))?;
    awt_base::write_atomic(log_path, &log).with_context(|| format!("cannot write {}", log_path.display()))?;
    awt_nets::save(&net, &a.out)?;
    say!("{}: rewound from {} (no search run again)", a.out.display(), from.display());
    crate::output::report_pruned(&net, &a.out)
}
