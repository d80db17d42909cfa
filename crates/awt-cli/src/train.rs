//! `awt train`: adversarial training of a zoo network, dense or with a fixed mask, as a resumable run
//! folder (config.toml, metrics.jsonl, state.safetensors, model.safetensors, summary.json).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use awt_nets::{Init, Net};
// The files a run writes into its folder (inputs may not be any of them).
use awt_runs::layout::{self, TRAIN_FILES};
use awt_train::{EpochMetrics, Hooks, RunFolder, TrainError};
use candle_core::{DType, Device};

use crate::output::{config_hash, git_commit, say};
use crate::train_args::{TrainArgs, flag_error};

/// Keeps masks applied, saves the best robust checkpoint, draws the progress bar.
struct CliHooks<'a> {
    net: &'a Net,
    tracker: Option<awt_ntk::Tracker>,
    /// With --keep-best: the best robust accuracy so far, its epoch, and where the checkpoint goes.
    best: Option<(f64, Option<usize>, PathBuf)>,
    /// `metrics.jsonl`: one JSON line per finished epoch.
    metrics: PathBuf,
    /// With --keep-epochs: the folder of the per-epoch models.
    epochs_dir: Option<PathBuf>,
    bar: indicatif::ProgressBar,
    epochs: usize,
    /// The files the run reads weights from (`--init` or `--ticket`, `--track-kernel`): the flag,
    /// the path and [`crate::output::model_hash`] of its content, saved in each checkpoint, so a
    /// resume from a file that changed since is refused rather than continued on other weights.
    inputs: Vec<(&'static str, PathBuf, String)>,
}

/// The checkpoint state key of an input file's hash.
fn input_key(flag: &str) -> String {
    format!("input {flag}")
}

/// [`CliHooks::inputs`] of a run.
fn input_hashes(a: &TrainArgs) -> Result<Vec<(&'static str, PathBuf, String)>> {
    let named = [("--init", &a.init), ("--ticket", &a.ticket), ("--track-kernel", &a.track_kernel)];
    let mut out = Vec::new();
    for (flag, path) in named {
        if let Some(p) = path {
            let bytes = std::fs::read(p).with_context(|| format!("{flag} {}: cannot read", p.display()))?;
            out.push((flag, p.clone(), crate::output::model_hash(p, &bytes)?));
        }
    }
    Ok(out)
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
                m.extra.insert(EpochMetrics::KERNEL_TO_INITIAL.into(), r.to_initial);
                if let Some(d) = r.to_reference {
                    m.extra.insert(EpochMetrics::KERNEL_TO_REFERENCE.into(), d);
                }
            }
        }
        if let Some(dir) = &self.epochs_dir {
            std::fs::create_dir_all(dir).map_err(TrainError::hook)?;
            let mut net = self.net.clone();
            net.meta.insert("epoch".into(), (m.epoch + 1).to_string());
            awt_nets::save(&net, &dir.join(layout::epoch_file(m.epoch + 1))).map_err(TrainError::hook)?;
        }
        append_line(&self.metrics, &serde_json::to_string(m).map_err(TrainError::hook)?)?;
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
        let mut state: BTreeMap<String, String> =
            self.inputs.iter().map(|(flag, _, hash)| (input_key(flag), hash.clone())).collect();
        if let Some((score, Some(epoch), _)) = &self.best {
            state.insert("best_score".into(), score.to_string());
            state.insert("best_epoch".into(), epoch.to_string());
        }
        state
    }

    fn restore(&mut self, epoch: usize, state: &BTreeMap<String, String>) -> Result<(), TrainError> {
        // Before anything is touched: the weights this run started from must be the ones the files
        // hold now (a checkpoint written before these hashes were kept has none and is taken as is).
        for (flag, path, hash) in &self.inputs {
            if let Some(saved) = state.get(&input_key(flag))
                && saved != hash
            {
                return Err(TrainError::Invalid(format!(
                    "cannot resume: {flag} {} is not the file this run started from (its weights and settings hash {hash}, the checkpoint's {saved}): the file changed since; start a new run (another --out, without --resume)",
                    path.display()
                )));
            }
        }
        // Keep the metrics of the checkpointed epochs only (a crash can leave a line for an epoch
        // whose checkpoint was never written).
        let text = std::fs::read_to_string(&self.metrics).unwrap_or_default();
        let kept: String = text.lines().take(epoch + 1).map(|l| format!("{l}\n")).collect();
        awt_base::write_atomic(&self.metrics, kept.as_bytes()).map_err(TrainError::hook)?;
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

/// Appends `line` to `path` and syncs it to disk.
fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    use std::io::Write;
    let file_err = |e: std::io::Error| TrainError::file_io(path, "cannot write", e);
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(file_err)?;
    writeln!(f, "{line}").map_err(file_err)?;
    f.sync_all().map_err(file_err)
}

/// Loads or initialises the network for a training run.
pub(crate) fn starting_net(a: &TrainArgs, dev: &Device) -> Result<Net> {
    let net = match (&a.init, &a.ticket) {
        (Some(p), None) | (None, Some(p)) => {
            // An awt checkpoint names its architecture; a foreign state dict takes --arch.
            let loaded = awt_nets::load(p, None, DType::F32, dev)
                .or_else(|_| awt_nets::load(p, Some(&a.arch), DType::F32, dev))?;
            if a.ticket.is_some() && loaded.net.masks().is_empty() {
                bail!("--ticket {}: the file holds no masks (use --init for a dense starting point)", p.display());
            }
            // A mask that keeps no weight of a layer cuts the network in two: nothing trains
            // through it (`awt prune` refuses to make one; a hand-made or foreign file may hold one).
            for (k, m) in loaded.net.masks() {
                if m.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? == 0.0 {
                    bail!(
                        "{}: the mask of `{k}` keeps no weight: the layer is emptied, the net cannot train",
                        p.display()
                    );
                }
            }
            loaded.net
        }
        _ => Net::init(&a.arch, Init::KaimingUniform, a.seed, DType::F32, dev)?,
    };
    net.apply_masks()?;
    Ok(net)
}

/// Runs `awt train`; returns the trained network, the metrics of the epochs run, and the number of
/// images the per-epoch evaluation used with their split's name (`validation` where one is held out,
/// else `test`).
pub(crate) fn run_training(
    a: &TrainArgs,
    dev: &Device,
    show_progress: bool,
) -> Result<(Net, Vec<EpochMetrics>, (usize, &'static str))> {
    // Every check comes before the first write: a refused run leaves its folder as it was.
    let cfg = a.train_config()?;
    let inputs: Vec<(&str, &Path)> =
        [("--init", &a.init), ("--ticket", &a.ticket), ("--track-kernel", &a.track_kernel)]
            .into_iter()
            .filter_map(|(f, p)| Some((f, p.as_deref()?)))
            .collect();
    for file in TRAIN_FILES {
        crate::files::refuse_overwriting_inputs("--out", &a.out.join(file), &inputs)?;
    }
    // A folder that holds a run's file names but no run configuration is somebody else's: a fresh
    // run would replace their files. A lone lock file holds nothing: it is what a run killed before
    // writing its configuration leaves, and that run must start again with the same command.
    if !a.resume
        && !a.out.join(awt_train::CONFIG).exists()
        && let Some(f) = TRAIN_FILES.iter().filter(|f| **f != layout::LOCK).find(|f| a.out.join(f).exists())
    {
        bail!(
            "--out {} holds {f} but is not a training run (no {}): its files would be replaced; choose another --out",
            a.out.display(),
            awt_train::CONFIG
        );
    }
    let net = starting_net(a, dev)?;
    let inputs = input_hashes(a)?;
    let arch = net.arch().clone();
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
            let reference = awt_nets::load(p, None, DType::F32, dev)?.net;
            let probe = ds.eval_split().0;
            let idx: Vec<usize> = (0..32.min(probe.len())).collect();
            let (x, y) = probe.batch(&idx, dev)?;
            let pgd = awt_attack::Pgd::linf(a.eps, 10, 0.25 * a.eps, a.seed);
            let xa = pgd.last_iterate(&reference, &x, &y, &idx.iter().map(|&i| i as u64).collect::<Vec<_>>())?;
            let mut shape = vec![idx.len()];
            shape.extend(reference.arch().input_shape());
            let probes = vec![("adversarial".to_string(), xa.reshape(shape.as_slice())?)];
            Some(awt_ntk::Tracker::new(&net.stages(), Some(&reference.stages()), &probes, 64)?)
        }
    };
    let folder = RunFolder::open(&a.out, &canonical, &hash, a.resume).map_err(flag_error)?;
    let metrics = a.out.join(layout::METRICS);
    if !a.resume {
        awt_base::write_atomic(&metrics, b"").with_context(|| format!("cannot write {}", metrics.display()))?;
    }
    let bar = crate::output::progress(1, "epoch");
    if !show_progress || a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut hooks = CliHooks {
        net: &net,
        tracker,
        best: a.keep_best.then(|| (f64::NEG_INFINITY, None, a.out.join(layout::BEST))),
        metrics,
        epochs_dir: a.keep_epochs.then(|| a.out.join(layout::EPOCHS)),
        bar,
        epochs: a.epochs,
        inputs,
    };
    let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let summary =
        awt_train::train(&net, vars, &train_split, ds.eval_split().0, &cfg, &folder, &mut hooks).map_err(flag_error)?;
    hooks.bar.finish_and_clear();
    let mut out = net.clone();
    out.meta.insert("git_commit".into(), git_commit().into());
    out.meta.insert("train_config_hash".into(), hash.clone());
    out.meta.insert(
        "trained".into(),
        format!(
            "{} {} eps={} epochs={} data={}",
            crate::args::value_name(&a.adv),
            crate::args::value_name(&a.opt),
            a.eps,
            a.epochs,
            a.data.name
        ),
    );
    let model_path = a.out.join(layout::MODEL);
    awt_nets::save(&out, &model_path)?;
    let metrics = read_metrics(&a.out.join(layout::METRICS))?;
    let last = metrics.last().cloned().unwrap_or(serde_json::Value::Null);
    let mut summary_json = serde_json::json!({
        "config_hash": hash, "git_commit": git_commit(), "arch": arch.to_string(), "data": a.data.name,
        "train_examples": train_split.len(), "eval_n": a.eval_n.min(ds.eval_split().0.len()),
        "densities": out.densities()?,
        "final": last, "epochs": metrics.len(), "resumed_from": summary.resumed_from,
        "threads": candle_core::utils::get_num_threads(),
    });
    crate::output::merge_json(&mut summary_json, crate::output::provenance_json(&ds));
    if ds.validation.is_some() {
        summary_json["eval_split"] = "validation".into();
    }
    crate::output::write_json(&a.out.join(layout::SUMMARY), &summary_json)?;
    drop(folder);
    let (split, name) = ds.eval_split();
    Ok((net, summary.epochs, (a.eval_n.min(split.len()), name)))
}

pub(crate) fn read_metrics(p: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("{}: bad line", p.display()))).collect()
}

pub(crate) fn run(a: TrainArgs, dev: &Device) -> Result<()> {
    let (_, epochs, (eval_n, split)) = run_training(&a, dev, true)?;
    if let Some(m) = epochs.last() {
        let robust = if m.robust_acc.is_finite() {
            format!(", PGD-{} {:.2}%", a.eval_steps, 100.0 * m.robust_acc)
        } else {
            String::new()
        };
        say!(
            "{}: {} epochs; final clean {:.2}%{robust} on {} {split} images; model in {}",
            a.out.display(),
            a.epochs,
            100.0 * m.clean_acc,
            eval_n,
            a.out.join(layout::MODEL).display()
        );
    } else {
        say!("{}: nothing left to run (all {} epochs were done)", a.out.display(), a.epochs);
    }
    Ok(())
}
