//! `awt eval`: clean and robust accuracy of a checkpoint under the attacks the field reports.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use awt_attack::{
    Apgd, ApgdTargeted, Attack, BatchEval, Checks, FabTargeted, Fgsm, LossKind, Norm, Pgd, Square, Warnings,
    evaluate_batch,
};
use awt_nets::Arch;
use awt_runs::records::{Curve, Eval, EvalSettings, EvalStep};
use candle_core::{DType, Device};
use clap::Args;

use crate::args::{AttackArg, DataArgs, LossArg, NormArg, SplitArg, value_name};
use crate::output::{progress, say};

/// Flags of `awt eval`.
#[derive(Args, Debug, Clone)]
pub(crate) struct EvalArgs {
    /// Checkpoint (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture, for a foreign PyTorch state dict without awt metadata.
    #[arg(long)]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub data: DataArgs,
    /// The split to evaluate on.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// First example.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Number of examples (default: the whole split from the offset).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The attack, or sequence of attacks on the points still standing.
    #[arg(long, value_enum, default_value_t = AttackArg::Pgd)]
    pub attack: AttackArg,
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    pub eps: f64,
    /// A security curve instead of one ε: robust accuracy at each of these ε (comma-separated,
    /// ascending), every point attacked at every ε with the same seeds; a point counts robust at ε
    /// only if it survived every smaller ε too (an adversarial example within a smaller ball lies
    /// within the larger one). The other settings are --eps's; the PGD step size follows each ε
    /// unless --step-size is given.
    #[arg(long, value_delimiter = ',', conflicts_with = "eps", allow_hyphen_values = true)]
    pub eps_curve: Vec<f64>,
    /// PGD steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// APGD iterations (APGD-CE, APGD-DLR, APGD-T).
    #[arg(long, default_value_t = 100)]
    pub apgd_steps: usize,
    /// FAB-T iterations per target.
    #[arg(long, default_value_t = 100)]
    pub fab_steps: usize,
    /// Target classes of APGD-T and FAB-T (the most likely after the predicted one).
    #[arg(long, default_value_t = 9)]
    pub targets: usize,
    /// Square's queries.
    #[arg(long, default_value_t = 5000)]
    pub square_queries: usize,
    /// PGD step size (default 2.5·ε/steps, Madry et al.).
    #[arg(long)]
    pub step_size: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// The threat model.
    #[arg(long, value_enum, default_value_t = NormArg::Linf)]
    pub norm: NormArg,
    /// PGD's loss.
    #[arg(long, value_enum, default_value_t = LossArg::Ce)]
    pub loss: LossArg,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Uniform-noise samples per robust point for the gradient-masking check (0: off).
    #[arg(long, default_value_t = 4)]
    pub noise_samples: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Results of an evaluation, also returned to callers such as `awt train`.
pub(crate) struct EvalResult {
    pub n: usize,
    pub clean: usize,
    pub robust_after: Vec<(String, usize)>,
    pub warnings: Warnings,
    pub seconds: f64,
    pub json: Eval,
}

/// Builds the attack list for `--attack`.
pub(crate) fn build_attacks(a: &EvalArgs) -> Result<Vec<Box<dyn Attack>>> {
    let norm = Norm::from(a.norm);
    let loss = match a.loss {
        LossArg::Ce => LossKind::CrossEntropy,
        LossArg::Cw => LossKind::CwMargin,
    };
    if !a.eps.is_finite() || a.eps < 0.0 {
        bail!("--eps must be a finite number ≥ 0, got {}", a.eps);
    }
    if a.restarts == 0 {
        bail!("--restarts must be ≥ 1");
    }
    let name = value_name(&a.attack);
    if a.steps == 0 && matches!(a.attack, AttackArg::Pgd | AttackArg::Worst) {
        bail!("--steps must be ≥ 1 for --attack {name} (0 steps is no attack: use --attack none)");
    }
    let uses_apgd = matches!(
        a.attack,
        AttackArg::ApgdCe
            | AttackArg::ApgdDlr
            | AttackArg::Worst
            | AttackArg::ApgdT
            | AttackArg::Autoattack
            | AttackArg::AutoattackFast
    );
    if a.apgd_steps == 0 && uses_apgd {
        bail!("--apgd-steps must be ≥ 1 for --attack {name}");
    }
    if a.fab_steps == 0 && matches!(a.attack, AttackArg::FabT | AttackArg::Autoattack) {
        bail!("--fab-steps must be ≥ 1 for --attack {name}");
    }
    if a.square_queries == 0 && matches!(a.attack, AttackArg::Square | AttackArg::Autoattack) {
        bail!("--square-queries must be ≥ 1 for --attack {name}");
    }
    let aa = matches!(
        a.attack,
        AttackArg::ApgdT | AttackArg::FabT | AttackArg::Square | AttackArg::Autoattack | AttackArg::AutoattackFast
    );
    if aa && norm != Norm::Linf {
        bail!("--attack {name}: only the ℓ∞ versions are implemented; use --norm linf");
    }
    if a.targets == 0
        && matches!(a.attack, AttackArg::ApgdT | AttackArg::FabT | AttackArg::Autoattack | AttackArg::AutoattackFast)
    {
        bail!("--targets must be ≥ 1 for --attack {name}");
    }
    let step = a.step_size.unwrap_or(Pgd::eval_step(a.eps, a.steps.max(1)));
    if a.eps > 0.0 && (!step.is_finite() || step <= 0.0) {
        bail!("--step-size must be > 0, got {step}");
    }
    let step = if a.eps == 0.0 { step.max(1e-3) } else { step };
    let pgd = Pgd { norm, restarts: a.restarts, loss, ..Pgd::linf(a.eps, a.steps, step, a.seed) };
    let apgd = |loss| Apgd { eps: a.eps, steps: a.apgd_steps, norm, restarts: a.restarts, loss, seed: a.seed };
    let apgd_t = ApgdTargeted {
        steps: a.apgd_steps,
        targets: a.targets,
        restarts: a.restarts,
        ..ApgdTargeted::standard(a.eps, a.seed)
    };
    let fab_t = FabTargeted { steps: a.fab_steps, targets: a.targets, ..FabTargeted::standard(a.eps) };
    let square = Square { queries: a.square_queries, ..Square::standard(a.eps, a.seed) };
    Ok(match a.attack {
        AttackArg::None => vec![],
        AttackArg::Fgsm => {
            if norm != Norm::Linf {
                bail!("--attack fgsm is an ℓ∞ attack; use --norm linf");
            }
            vec![Box::new(Fgsm { eps: a.eps, loss })]
        }
        AttackArg::Pgd => vec![Box::new(pgd)],
        AttackArg::ApgdCe => vec![Box::new(apgd(LossKind::CrossEntropy))],
        AttackArg::ApgdDlr => vec![Box::new(apgd(LossKind::Dlr))],
        AttackArg::Worst => vec![Box::new(pgd), Box::new(apgd(LossKind::CrossEntropy)), Box::new(apgd(LossKind::Dlr))],
        AttackArg::ApgdT => vec![Box::new(apgd_t)],
        AttackArg::FabT => vec![Box::new(fab_t)],
        AttackArg::Square => vec![Box::new(square)],
        AttackArg::Autoattack => {
            vec![Box::new(apgd(LossKind::CrossEntropy)), Box::new(apgd_t), Box::new(fab_t), Box::new(square)]
        }
        AttackArg::AutoattackFast => vec![Box::new(apgd(LossKind::CrossEntropy)), Box::new(apgd_t)],
    })
}

/// Runs an evaluation of `net` (already loaded) on the examples `offset..offset+limit` of a split.
pub(crate) fn evaluate(net: &awt_nets::Net, a: &EvalArgs, show_progress: bool) -> Result<EvalResult> {
    build_attacks(a)?;
    let ds = a.data.load_for(net)?;
    evaluate_on(net, a, &ds, show_progress.then_some("eval"), &mut |_| ())
}

/// [`evaluate`] on a loaded dataset, a progress bar labelled `label` (none without), and `each`
/// shown every batch's outcomes in example order.
fn evaluate_on(
    net: &awt_nets::Net,
    a: &EvalArgs,
    ds: &awt_data::Dataset,
    label: Option<&str>,
    each: &mut dyn FnMut(&BatchEval),
) -> Result<EvalResult> {
    let attacks = build_attacks(a)?;
    if a.batch == 0 {
        bail!("--batch must be ≥ 1 (examples per batch)");
    }
    let split = a.split.of(ds)?;
    if a.limit == Some(0) {
        bail!("--limit must be ≥ 1 (examples to evaluate)");
    }
    let n = a.limit.unwrap_or(split.len().saturating_sub(a.offset));
    if a.offset + n > split.len() || n == 0 {
        bail!(
            "--offset {} --limit {n}: the {} split of {} has {} examples",
            a.offset,
            value_name(&a.split),
            a.data.name,
            split.len()
        );
    }
    let refs: Vec<&dyn Attack> = attacks.iter().map(|b| b.as_ref()).collect();
    let start = Instant::now();
    let pb = progress(n as u64, label.unwrap_or("eval"));
    if label.is_none() {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut clean, mut robust, mut robust_after) = (0usize, 0usize, vec![0usize; refs.len()]);
    let mut warnings = Warnings::default();
    let dev = net.device();
    let idx: Vec<usize> = (a.offset..a.offset + n).collect();
    for chunk in idx.chunks(a.batch) {
        let (x, y) = split.batch(chunk, &dev)?;
        let x = x.to_dtype(net.dtype())?;
        let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
        let checks = Checks {
            noise_eps: if norm_is_linf(a) { a.eps } else { 0.0 },
            noise_samples: a.noise_samples,
            seed: a.seed,
        };
        let be = evaluate_batch(net, &x, &y, &ids, &refs, &checks)?;
        each(&be);
        clean += be.clean.iter().filter(|&&c| c).count();
        robust += be.robust.iter().filter(|&&c| c).count();
        for (j, r) in be.robust_after.iter().enumerate() {
            robust_after[j] += r.iter().filter(|&&c| c).count();
        }
        warnings.merge(&be.warnings);
        pb.inc(chunk.len() as u64);
        let acc = robust_after.last().copied().unwrap_or(clean) as f64 / pb.position() as f64;
        pb.set_message(format!("robust {:.1}%", 100.0 * acc));
    }
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let names: Vec<String> = refs.iter().map(|r| r.name()).collect();
    let robust_after: Vec<(String, usize)> = names.into_iter().zip(robust_after).collect();
    let acc = |c: usize| c as f64 / n as f64;
    let d = crate::output::DatasetFields::of(ds);
    let json = Eval {
        arch: net.arch().to_string(),
        clean_accuracy: acc(clean),
        clean_correct: clean as u64,
        cumulative: robust_after
            .iter()
            .map(|(k, v)| EvalStep { attack: k.clone(), robust_accuracy: acc(*v), robust_correct: *v as u64 })
            .collect(),
        data: a.data.name.clone(),
        dataset_files: d.files,
        dataset_location: d.location,
        dataset_unverified: Some(d.unverified),
        dataset_verified: Some(d.verified),
        device: crate::output::device_name(&net.device()),
        git_commit: crate::output::git_commit().to_string(),
        gradient_free_only: Some(warnings.gradient_free_only as u64),
        gradient_masking_suspected: Some(warnings.gradient_masking_suspected()),
        model: a.model.display().to_string(),
        n: n as u64,
        noise_broken: Some(warnings.noise_beats_attack as u64),
        offset: a.offset as u64,
        // Without an attack there is no robust accuracy to report (it is not the clean one).
        robust_accuracy: (!refs.is_empty()).then(|| acc(robust)),
        robust_correct: (!refs.is_empty()).then_some(robust as u64),
        settings: EvalSettings {
            apgd_steps: a.apgd_steps as u64,
            attack: value_name(&a.attack),
            batch: a.batch as u64,
            eps: a.eps,
            fab_steps: Some(a.fab_steps as u64),
            loss: value_name(&a.loss),
            noise_samples: a.noise_samples as u64,
            norm: value_name(&a.norm),
            restarts: a.restarts as u64,
            seed: a.seed,
            square_queries: Some(a.square_queries as u64),
            step_size: a.step_size.unwrap_or(Pgd::eval_step(a.eps, a.steps.max(1))),
            steps: a.steps as u64,
            targets: Some(a.targets as u64),
        },
        split: Some(value_name(&a.split)),
        train_examples_after_hold_out: d.held_out.map(|h| h.1),
        validation_held_out: d.held_out.map(|h| h.0),
        wall_seconds: seconds,
        warnings: warnings.messages(),
    };
    Ok(EvalResult { n, clean, robust_after, warnings, seconds, json })
}

/// A security curve (`--eps-curve`): every ε's evaluation as `--eps ε` gives it, then the curve's
/// counts, a point robust at ε only when robust at every smaller ε too.
pub(crate) fn curve(net: &awt_nets::Net, a: &EvalArgs, show_progress: bool) -> Result<Curve> {
    let eps = &a.eps_curve;
    if eps.is_empty() {
        bail!("--eps-curve needs at least one ε");
    }
    if let Some(e) = eps.iter().find(|e| !e.is_finite() || **e < 0.0) {
        bail!("--eps-curve: every ε must be a finite number ≥ 0, got {e}");
    }
    if let Some(w) = eps.windows(2).find(|w| w[1] <= w[0]) {
        bail!("--eps-curve must be strictly ascending, got {} then {}", w[0], w[1]);
    }
    if a.attack == AttackArg::None {
        bail!("--eps-curve needs an attack (--attack none measures clean accuracy only)");
    }
    let at: Vec<EvalArgs> = eps.iter().map(|&e| EvalArgs { eps: e, eps_curve: Vec::new(), ..a.clone() }).collect();
    // Every ε's settings are checked before any of them runs.
    for v in &at {
        build_attacks(v)?;
    }
    let ds = a.data.load_for(net)?;
    let mut standing: Option<Vec<bool>> = None;
    let (mut evals, mut reversals, mut robust_correct) = (Vec::new(), Vec::new(), Vec::new());
    for v in &at {
        let mut robust = Vec::new();
        let label = format!("ε = {}", v.eps);
        let r = evaluate_on(net, v, &ds, show_progress.then_some(label.as_str()), &mut |be| {
            robust.extend_from_slice(&be.robust)
        })?;
        let before = standing.take().unwrap_or_else(|| vec![true; robust.len()]);
        reversals.push(robust.iter().zip(&before).filter(|(now, was)| **now && !**was).count() as u64);
        let now: Vec<bool> = robust.iter().zip(&before).map(|(now, was)| *now && *was).collect();
        robust_correct.push(now.iter().filter(|r| **r).count() as u64);
        standing = Some(now);
        evals.push(r.json);
    }
    let n = evals[0].n as f64;
    Ok(Curve {
        eps: eps.clone(),
        evals,
        reversals,
        robust_accuracy: robust_correct.iter().map(|&c| c as f64 / n).collect(),
        robust_correct,
    })
}

/// What was evaluated: `model on data split [from..to), what (norm), seed s`.
fn heading(a: &EvalArgs, n: usize, what: &str) -> String {
    format!(
        "{} on {} {} [{}..{}), {what} ({}), seed {}",
        a.model.display(),
        a.data.name,
        value_name(&a.split),
        a.offset,
        a.offset + n,
        value_name(&a.norm),
        a.seed
    )
}

fn run_curve(a: &EvalArgs, net: &awt_nets::Net) -> Result<()> {
    let c = curve(net, a, true)?;
    let first = &c.evals[0];
    say!("{}: a security curve", heading(a, first.n as usize, &value_name(&a.attack)));
    let pct = |c: u64| 100.0 * c as f64 / first.n as f64;
    say!("{:<10} {:>16} {:>16} {:>10}", "ε", "attacks alone", "curve", "reversals");
    say!("{:<10} {:>7} {:>7.2}%", "clean", first.clean_correct, pct(first.clean_correct));
    for (i, e) in c.eps.iter().enumerate() {
        let alone = c.evals[i].robust_correct.unwrap_or(0);
        let curve = c.robust_correct[i];
        say!("{e:<10} {alone:>7} {:>7.2}% {curve:>7} {:>7.2}% {:>10}", pct(alone), pct(curve), c.reversals[i]);
    }
    say!("n = {}, {:.1} s", first.n, c.evals.iter().map(|e| e.wall_seconds).sum::<f64>());
    for (e, ev) in c.eps.iter().zip(&c.evals) {
        for w in &ev.warnings {
            say!("WARNING (ε = {e}): {w}");
        }
    }
    let reversed: u64 = c.reversals.iter().sum();
    if reversed > 0 {
        say!(
            "WARNING: the attacks left {reversed} point(s) standing at an ε where they had broken them at a smaller one \
             (counted broken on the curve): the attack has not converged there; more --steps or --restarts"
        );
    }
    if let Some(p) = &a.json {
        crate::output::write_json(p, &c)?;
    }
    Ok(())
}

/// What `awt eval --json` writes: one evaluation, or a security curve.
const EVAL_JSON: crate::files::Kind = crate::files::Kind::new("an evaluation awt eval wrote", |b| {
    use crate::files::parses;
    parses::<awt_runs::records::Eval>(b) || parses::<awt_runs::records::Curve>(b)
});

pub(crate) fn run(a: EvalArgs, dev: &Device) -> Result<()> {
    let _owned = a
        .json
        .as_deref()
        .map(|j| crate::files::own("--json", j, EVAL_JSON, &[], &[("--model", &a.model)]))
        .transpose()?;
    let net = awt_nets::load(&a.model, a.arch.as_ref(), DType::F32, dev)?.net;
    if !a.eps_curve.is_empty() {
        return run_curve(&a, &net);
    }
    let r = evaluate(&net, &a, true)?;
    say!("{}", heading(&a, r.n, &format!("ε = {}", a.eps)));
    say!("{:<24} {:>8} {:>9}", "attack", "correct", "accuracy");
    say!("{:<24} {:>8} {:>8.2}%", "clean", r.clean, 100.0 * r.clean as f64 / r.n as f64);
    for (name, c) in &r.robust_after {
        let label = if r.robust_after.len() > 1 { format!("+ {name}") } else { name.clone() };
        say!("{:<24} {:>8} {:>8.2}%", label, c, 100.0 * *c as f64 / r.n as f64);
    }
    if r.warnings.noise_beats_attack > 0 {
        let robust = r.robust_after.last().map_or(0, |x| x.1) - r.warnings.noise_beats_attack;
        say!("{:<24} {:>8} {:>8.2}%", "+ uniform noise", robust, 100.0 * robust as f64 / r.n as f64);
    }
    say!("n = {}, {:.1} s", r.n, r.seconds);
    for w in r.warnings.messages() {
        say!("WARNING: {w}");
    }
    if let Some(p) = &a.json {
        crate::output::write_json(p, &r.json)?;
    }
    Ok(())
}

/// True for the ℓ∞ threat model (the uniform-noise check samples the ℓ∞ ball).
fn norm_is_linf(a: &EvalArgs) -> bool {
    a.norm == NormArg::Linf
}
