//! `awt dynamics`: does a sparse net train like the dense one? Epoch by epoch, on one fixed probe set
//! (the first test images and their PGD examples against the dense net *at that epoch*, the same
//! points for both nets), the sparse net's NTK against the dense net's NTK at the same epoch — both
//! trained with the same seed and data order — and each net's kernel against its own
//! initialisation; plus the gap between the two training-loss curves.
//!
//! Needs both training folders written with `awt train --keep-epochs` (`epochs/epoch-NNN.safetensors`
//! after each epoch); epoch 0 is the two starting checkpoints.

use awt_runs::layout;
use awt_runs::records::DynamicsLine;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use awt_attack::Pgd;
use awt_base::Staged;
use awt_nets::Net;
use awt_ntk::Kind;
use candle_core::{DType, Device, Tensor};
use clap::Args;

use crate::args::DataArgs;
use crate::output::say;

/// Flags of `awt dynamics`.
#[derive(Args, Debug)]
pub(crate) struct DynamicsArgs {
    /// The dense net's training folder (`awt train --keep-epochs --out DIR`).
    #[arg(long)]
    dense: PathBuf,
    /// The checkpoint the dense net started from.
    #[arg(long)]
    dense_init: PathBuf,
    /// The sparse net's training folder.
    #[arg(long)]
    run: PathBuf,
    /// The checkpoint (ticket) the sparse net started from.
    #[arg(long)]
    init: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Probe points: the first N test images.
    #[arg(long, default_value_t = 64)]
    probe: usize,
    /// ℓ∞ radius of the probe's PGD examples.
    #[arg(long, default_value_t = 0.1)]
    eps: f64,
    /// PGD steps (step size ε/4, random start from --seed).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output: one JSON line per epoch (written atomically at the end).
    #[arg(long)]
    out: PathBuf,
}

fn epoch_file(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(layout::EPOCHS).join(layout::epoch_file(epoch))
}

/// Epochs 1.. saved in a training folder (stops at the first gap).
fn saved_epochs(dir: &Path) -> usize {
    (1..).take_while(|&e| epoch_file(dir, e).is_file()).count()
}

fn load(p: &Path, dev: &Device) -> Result<Net> {
    Ok(awt_nets::load(p, None, DType::F32, dev).with_context(|| format!("{}", p.display()))?.net)
}

/// Training losses per epoch from a folder's metrics.jsonl.
fn losses(dir: &Path) -> Result<Vec<f64>> {
    let m = crate::train::read_metrics(&dir.join(layout::METRICS))?;
    Ok(m.iter().map(|v| v["train_loss"].as_f64().unwrap_or(f64::NAN)).collect())
}

fn frob(t: &Tensor) -> Result<f64> {
    Ok(t.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.sqrt())
}

/// (‖a − b‖ / ‖b‖, ⟨a, b⟩ / (‖a‖ ‖b‖)).
fn compare(a: &Tensor, b: &Tensor) -> Result<(f64, f64)> {
    let (na, nb) = (frob(a)?, frob(b)?);
    let dot = a.mul(b)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((frob(&(a - b)?)? / nb, dot / (na * nb)))
}

fn kernel(net: &Net, x: &Tensor) -> Result<Tensor> {
    Ok(awt_ntk::structured(&net.stages(), x, x, Kind::Full)?)
}

/// The checkpoint a training folder started from, from its `config.toml`: `("init" | "ticket", path)`.
fn started_from(dir: &Path) -> Result<(String, PathBuf)> {
    let p = dir.join(awt_train::CONFIG);
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {} (not a training folder?)", p.display()))?;
    let t: toml::Table = text.parse().with_context(|| format!("{}: not valid TOML", p.display()))?;
    for key in ["ticket", "init"] {
        if let Some(v) = t.get(key).and_then(|v| v.as_str()) {
            return Ok((key.to_string(), PathBuf::from(v)));
        }
    }
    bail!("{}: records neither `init` nor `ticket`", p.display())
}

/// Refuses inputs that do not belong together: `--dense` must be a dense run started from
/// `--dense-init`, `--run` a run started from `--init` (the folders' `config.toml` record both).
/// Mixed-up inputs would give plausible, wrong numbers.
fn check_inputs_belong_together(a: &DynamicsArgs) -> Result<()> {
    let (dense_kind, dense_from) = started_from(&a.dense)?;
    if dense_kind == "ticket" {
        bail!(
            "--dense {} trained a ticket ({}), not the dense net: are --dense and --run swapped?",
            a.dense.display(),
            dense_from.display()
        );
    }
    for (flag, dir, start, start_flag) in
        [("--dense", &a.dense, &a.dense_init, "--dense-init"), ("--run", &a.run, &a.init, "--init")]
    {
        let (_, from) = started_from(dir)?;
        if !crate::files::same_file(&from, start) {
            bail!(
                "{flag} {} started from {}, not from {start_flag} {}: give the checkpoint that run started from",
                dir.display(),
                from.display(),
                start.display()
            );
        }
    }
    Ok(())
}

/// What `awt dynamics --out` writes: one line per epoch.
const DYNAMICS: crate::files::Kind = crate::files::Kind::jsonl::<DynamicsLine>("kernel dynamics awt dynamics wrote");

pub(crate) fn run(a: DynamicsArgs, dev: &Device) -> Result<()> {
    if a.probe == 0 {
        bail!("--probe must be ≥ 1");
    }
    check_inputs_belong_together(&a)?;
    // Every file read is an input the output may not replace.
    let epoch_files: Vec<PathBuf> = [&a.dense, &a.run]
        .iter()
        .flat_map(|d| {
            (1..=saved_epochs(d))
                .map(move |e| epoch_file(d, e))
                .chain([d.join(layout::METRICS), d.join(layout::CONFIG)])
        })
        .collect();
    let mut inputs: Vec<(&str, &Path)> = vec![("--dense-init", &a.dense_init), ("--init", &a.init)];
    inputs.extend(epoch_files.iter().map(|p| ("an epoch checkpoint or record of --dense/--run", p.as_path())));
    let _owned = crate::files::own("--out", &a.out, DYNAMICS, &[], &inputs)?;
    let epochs = saved_epochs(&a.dense).min(saved_epochs(&a.run));
    if epochs == 0 {
        bail!(
            "no epoch checkpoints in both {} and {} (train them with `awt train --keep-epochs`)",
            a.dense.join(layout::EPOCHS).display(),
            a.run.join(layout::EPOCHS).display()
        );
    }
    let (dense0, sparse0) = (load(&a.dense_init, dev)?, load(&a.init, dev)?);
    if dense0.arch() != sparse0.arch() {
        bail!(
            "--dense-init {} is {} but --init {} is {}: the two nets must share an architecture",
            a.dense_init.display(),
            dense0.arch(),
            a.init.display(),
            sparse0.arch()
        );
    }
    // The study's measure compares a ticket with the dense net of its own seed; across seeds the
    // distance also holds how far apart the two initialisations are (a control one may want).
    if let (Some(d), Some(r)) = (dense0.meta.get("seed"), sparse0.meta.get("seed"))
        && d != r
    {
        eprintln!(
            "warning: --dense-init is seed {d}'s initialisation and --init seed {r}'s: the distances include \
             the difference of the two initialisations, not only of their training"
        );
    }
    // Four full kernels of (probe · classes)² entries live at once (both nets now and at epoch 0),
    // with their difference and f64 copies in the comparison.
    let side = (a.probe * dense0.arch().classes()) as f64;
    crate::output::check_memory(&format!("--probe {}", a.probe), side * side * 4.0 * 8.0)?;
    let ds = a.data.load_for(&dense0)?;
    if a.probe > ds.test.len() {
        bail!("--probe {}: the test split of {} has {} images", a.probe, a.data.name, ds.test.len());
    }
    let idx: Vec<usize> = (0..a.probe).collect();
    let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
    let (x, y) = ds.test.batch(&idx, dev)?;
    let mut shape = vec![idx.len()];
    shape.extend(dense0.arch().input_shape());
    let (ld, ls) = (losses(&a.dense)?, losses(&a.run)?);
    let pgd = Pgd::linf(a.eps, a.steps, 0.25 * a.eps, a.seed);
    let mut out = String::new();
    for t in 0..=epochs {
        let (dense, sparse) = if t == 0 {
            (dense0.clone(), sparse0.clone())
        } else {
            (load(&epoch_file(&a.dense, t), dev)?, load(&epoch_file(&a.run, t), dev)?)
        };
        let xa = pgd.last_iterate(&dense, &x, &y, &ids)?.reshape(shape.as_slice())?;
        let (kd, ks) = (kernel(&dense, &xa)?, kernel(&sparse, &xa)?);
        let (rel_distance, alignment) = compare(&ks, &kd)?;
        let sparse_change = compare(&ks, &kernel(&sparse0, &xa)?)?.0;
        let dense_change = compare(&kd, &kernel(&dense0, &xa)?)?.0;
        let loss_gap = (t > 0).then(|| ls.get(t - 1).zip(ld.get(t - 1)).map(|(s, d)| s - d)).flatten();
        let rec = DynamicsLine { epoch: t as u64, rel_distance, alignment, sparse_change, dense_change, loss_gap };
        out += &serde_json::to_string(&rec)?;
        out.push('\n');
    }
    awt_base::write_atomic(&a.out, out.as_bytes()).with_context(|| format!("cannot write {}", a.out.display()))?;
    say!("{}: kernel dynamics over {epochs} epochs on {} probe points", a.out.display(), idx.len());
    Ok(())
}
