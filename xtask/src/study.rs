//! `cargo xtask report --study`: docs/study.md and its figures from the committed records in
//! `results/` — the NTT validation and the study grid — with mean ± sd over seeds, paired differences
//! with 95 % t-intervals, and verdicts that say so when the seeds cannot decide. Never drawn by hand.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::plan::variant_of;
use crate::records::{EvalRecord, Manifest, read_json, read_jsonl};
use crate::root;
pub(super) use crate::spec::plain_of;
use crate::stats::{above, paired, summary};

mod aa;
mod beyond;
mod claims;
mod compute;
mod cutoff;
mod dynamics;
mod figures;
mod ntt;
mod search;
mod selection;
mod warnings;
use claims::claims;
use compute::compute;
use cutoff::{cut_classes, cut_off_finding, stalled, stalled_finding};
use figures::write_figure;
use ntt::{ntt_density, ntt_section, ntt_verdict};

/// One search-log line (the fields the study reads).
#[derive(Clone, Debug, Deserialize)]
struct SearchLine {
    step: u64,
    kernel_distance: f64,
    output_distance: f64,
    #[serde(default)]
    mask_changes: u64,
    #[serde(default)]
    kernel_term: Option<f64>,
    #[serde(default)]
    output_term: Option<f64>,
}

/// One line of `dynamics.jsonl` (`awt dynamics`).
#[derive(Clone, Debug, Deserialize)]
struct DynLine {
    epoch: u64,
    rel_distance: f64,
    alignment: f64,
    sparse_change: f64,
    dense_change: f64,
    #[serde(default)]
    loss_gap: Option<f64>,
}

/// One line of a training run's `train-metrics.jsonl` (the fields the study reads).
#[derive(Clone, Debug, Deserialize)]
struct TrainLine {
    train_loss: f64,
}

/// `mask.json` (`awt inspect --json`): the fields the study reads.
#[derive(Clone, Debug, Default, Deserialize)]
struct MaskRecord {
    /// Classes whose logit has no kept incoming weight (only the bias reaches them).
    #[serde(default)]
    classes_without_input: Option<Vec<u64>>,
}

/// A recorded run: `results/<preset>/<run>/`.
struct Rec {
    m: Manifest,
    aa: Option<EvalRecord>,
    mask: Option<MaskRecord>,
    search: Vec<SearchLine>,
    dynamics: Vec<DynLine>,
    /// The final training's epochs (empty where not recorded).
    train: Vec<TrainLine>,
}

impl Rec {
    /// The method with its ablation: the run name without the architecture and `-d…-s…`.
    fn variant(&self) -> String {
        self.m.variant()
    }

    fn measure(&self, which: Measure) -> Option<f64> {
        match which {
            // AutoAttack may run on a prefix of the evaluation set (`[eval] autoattack_n`).
            Measure::AutoAttack => self.aa.as_ref().map(|a| a.robust_correct as f64 / a.n as f64),
            Measure::Clean => Some(self.m.clean()),
            Measure::Pgd => Some(self.m.first_attack()).filter(|v| v.is_finite()),
            Measure::Worst => Some(self.m.robust()),
        }
    }

    /// Mean of a dynamics measure over the trained epochs (epoch ≥ 1).
    fn mean_dynamics(&self, f: impl Fn(&DynLine) -> Option<f64>) -> Option<f64> {
        dynamics::over_training(&self.dynamics, f)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Measure {
    Clean,
    Pgd,
    Worst,
    AutoAttack,
}

fn load(preset: &str) -> Result<Vec<Rec>> {
    let dir = root().join("results").join(preset);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in entries {
        let p = e?.path();
        if !p.join("manifest.json").exists() {
            continue;
        }
        let aa = p.join("eval-aa.json");
        out.push(Rec {
            m: crate::records::read_manifest(&p.join("manifest.json"))?,
            aa: if aa.exists() { Some(read_json(&aa)?) } else { None },
            mask: if p.join("mask.json").exists() { Some(read_json(&p.join("mask.json"))?) } else { None },
            search: read_jsonl(&p.join("search.jsonl"))?,
            dynamics: read_jsonl(&p.join("dynamics.jsonl"))?,
            train: read_jsonl(&p.join("train-metrics.jsonl"))?,
        });
    }
    out.sort_by(|a, b| a.m.name.cmp(&b.m.name));
    Ok(out)
}

/// The runs of one variant at one density (the dense net's at any density).
fn runs_of<'a>(recs: &'a [Rec], variant: &'a str, density: f64) -> impl Iterator<Item = &'a Rec> + 'a {
    recs.iter().filter(move |r| r.variant() == variant && (variant == "dense" || (r.m.density - density).abs() < 1e-12))
}

/// (seed, value) of one variant at one density (the dense net at any density).
fn by_seed(recs: &[Rec], variant: &str, density: f64, f: impl Fn(&Rec) -> Option<f64>) -> Vec<(u64, f64)> {
    runs_of(recs, variant, density).filter_map(|r| Some((r.m.seed, f(r)?))).collect()
}

fn values(v: &[(u64, f64)]) -> Vec<f64> {
    v.iter().map(|x| x.1).collect()
}

/// Writes docs/study.md and docs/figures/study-*.svg.
pub(crate) fn write(out: &Path) -> Result<()> {
    let fig_dir = out.parent().unwrap_or(Path::new(".")).join("figures");
    std::fs::create_dir_all(&fig_dir)?;
    let mut md = String::from(
        "# The study\n\nGenerated by `cargo xtask report --study` from the records committed under `results/`; do not edit by hand. \
Differences are paired by seed (same initialisation, data order and attack seeds) and given with 95 % Student-t intervals; \
a verdict is only given where the interval decides it.\n\n",
    );
    let (ntt, study) = (load("ntt-validation")?, load("study")?);
    md += &at_a_glance(&ntt, &study)?;
    md += &ntt_section(&ntt, &fig_dir)?;
    md += &study_section(&study, &fig_dir)?;
    md += &warnings::section(&[("ntt-validation", &ntt), ("study", &study)]);
    std::fs::write(out, md).with_context(|| format!("cannot write {}", out.display()))?;
    // Study v2's selections, beside the report.
    let sel = out.with_file_name("selection.md");
    std::fs::write(&sel, selection::report()?).with_context(|| format!("cannot write {}", sel.display()))?;
    eprintln!("wrote {} and figures in {}", out.display(), fig_dir.display());
    Ok(())
}

/// The verdicts of both sections before the sections that derive them: NTT against random in
/// natural training, the paper's claims with a column per density, and whether an AWT variant
/// reaches the dense net.
fn at_a_glance(ntt: &[Rec], study: &[Rec]) -> Result<String> {
    let mut md = String::from("## At a glance\n\n");
    if !ntt.is_empty() {
        let d = ntt_density(ntt);
        writeln!(
            md,
            "**NTT where its authors published a result** (§1; clean accuracy, natural training, density {d}): {}\n",
            ntt_verdict(ntt, d)
        )?;
    }
    if study.is_empty() {
        md += "**The adversarial study** (§2): no run recorded yet.\n\n";
        return Ok(md);
    }
    let (head, label) = headline(study);
    let so_far = match crate::spec::load("study").and_then(|spec| planned(&spec, study)) {
        Ok(runs) => format!(", from {} of the {} planned runs", runs.iter().filter(|r| r.1).count(), runs.len()),
        Err(_) => String::new(),
    };
    writeln!(
        md,
        "**The paper's claims** (§2{so_far}; robust accuracy under {label}; paired differences over seeds with 95 % intervals, \
\"(one seed)\" where only one is recorded so far):\n"
    )?;
    md += &claims::glance(study, &sparse_densities(study), head)?;
    if let Some((_, finding)) = beyond::named_method_parts(study, &variants(study), head)? {
        let finding = finding.trim_end();
        let finding = finding.strip_prefix("**Finding.** ").unwrap_or(finding);
        write!(md, "\n**Beyond the paper** (does an AWT variant reach the dense net at density 0.05?): {finding}\n")?;
    }
    if let Some(g) = dynamics::glance(study, &sparse_densities(study), head) {
        write!(md, "\n{g}\n")?;
    }
    md += "\n";
    Ok(md)
}

/// The variants of a grid in a fixed order: dense, the spec's methods, then the ablations.
fn variants(recs: &[Rec]) -> Vec<String> {
    let order = crate::spec::METHODS;
    let mut v: Vec<String> = recs.iter().map(Rec::variant).collect::<BTreeSet<_>>().into_iter().collect();
    v.sort_by_key(|x| (order.iter().position(|m| m == x).unwrap_or(order.len()), x.clone()));
    v
}

/// The runs the plan holds given the records (follow-ups earned so far included), each with whether
/// it is recorded (under its run's current settings).
fn planned(spec: &crate::spec::Spec, recs: &[Rec]) -> Result<Vec<(crate::plan::Run, bool)>> {
    let find = |name: &str, canonical: &str| {
        recs.iter().find(|r| r.m.name == name && r.m.config_hash == crate::plan::fnv(canonical))
    };
    let runs = crate::plan::expand(spec, &spec.data, Path::new("results"), &|n, c| find(n, c).map(|r| r.m.robust()))?;
    Ok(runs
        .into_iter()
        .map(|r| {
            let done = find(&r.name, &r.canonical).is_some();
            (r, done)
        })
        .collect())
}

/// How much of the planned grid `results/` holds (a record counts only under its run's current settings).
fn progress(spec: &crate::spec::Spec, recs: &[Rec]) -> Result<String> {
    let runs = planned(spec, recs)?;
    let done = runs.iter().filter(|r| r.1).count();
    let follow = runs.len() - crate::plan::expand(spec, &spec.data, Path::new("results"), &|_, _| None)?.len();
    let mut md = format!("**Progress:** {done} of the {} planned runs are recorded", runs.len());
    if follow > 0 {
        md += &format!(" (the plan includes {follow} ablation follow-up runs earned so far)");
    }
    md += "; every table below is over what is recorded.";
    let left: Vec<String> = runs.iter().filter(|r| !r.1).map(|(r, _)| variant_of(&r.name, &r.arch)).collect();
    if let Some(h) = compute::hours_left(recs, &left) {
        md += &format!(
            " At the recorded median time per run of each variant, the {} runs left need about {h:.1} h of running: \
about {:.1} h of wall time with two at once on the 2-core machine (`--jobs 2`).",
            left.len(),
            h / 2.0
        );
    }
    md += "\n\n";
    Ok(md)
}

/// The headline measure and its name: AutoAttack where it covers the whole evaluation set of every
/// run, else the worst case of the gradient attacks.
fn headline(recs: &[Rec]) -> (Measure, &'static str) {
    if recs.iter().all(|r| r.aa.as_ref().is_some_and(|a| a.n == r.m.eval.n)) {
        (Measure::AutoAttack, "AutoAttack")
    } else {
        (Measure::Worst, "worst case of PGD-20, APGD-CE, APGD-DLR")
    }
}

/// The recorded densities below 1, highest first.
fn sparse_densities(recs: &[Rec]) -> Vec<f64> {
    let mut densities: Vec<f64> = recs.iter().map(|r| r.m.density).filter(|d| *d < 1.0).collect();
    densities.sort_by(|a, b| b.total_cmp(a));
    densities.dedup();
    densities
}

/// Sections 2–4: the study grid, its kernel dynamics and the compute it took.
fn study_section(recs: &[Rec], fig_dir: &Path) -> Result<String> {
    let mut md = String::from("## 2. The adversarial study\n\n");
    let spec = crate::spec::load("study").ok();
    if let Some(s) = &spec {
        writeln!(md, "{}\n", s.description)?;
    }
    if let Some(s) = &spec {
        md += &progress(s, recs)?;
    }
    if recs.is_empty() {
        md += "No run of the study grid is recorded yet. It runs with `cargo xtask reproduce --preset study` (resumable; \
`--list` shows the runs); this section is filled in from `results/study/` as runs finish.\n\n";
        return Ok(md);
    }
    let aa_n: BTreeSet<u64> = recs.iter().filter_map(|r| r.aa.as_ref().map(|a| a.n)).collect();
    let aa_head = match (aa_n.len(), aa_n.first()) {
        (1, Some(&k)) if k < recs[0].m.eval.n => format!("AutoAttack (first {k})"),
        _ => "AutoAttack".to_string(),
    };
    let (head, label) = headline(recs);
    writeln!(
        md,
        "The headline measure is robust accuracy under **{label}** on the first {} test images.\n",
        recs[0].m.eval.n
    )?;
    let densities = sparse_densities(recs);
    let vs = variants(recs);
    for &d in &densities {
        writeln!(md, "### Density {d}\n")?;
        writeln!(
            md,
            "| ticket | seeds | clean | PGD-20 | worst (PGD, APGD-CE, APGD-DLR) | {aa_head} | runs with a class cut off | runs whose training stalled |\n|---|---|---|---|---|---|---|---|"
        )?;
        for v in &vs {
            let cell = |m: Measure| summary(&values(&by_seed(recs, v, d, |r| r.measure(m)))).pct();
            let n = by_seed(recs, v, d, |r| r.measure(Measure::Clean)).len();
            if n == 0 {
                continue;
            }
            // Of the runs whose ticket structure is recorded (mask.json), those that leave a class
            // without any kept incoming weight.
            let masked: Vec<&Rec> = recs
                .iter()
                .filter(|r| r.variant() == *v && (r.m.density - d).abs() < 1e-12 && r.mask.is_some())
                .collect();
            let cut = masked.iter().filter(|r| !cut_classes(recs, v, d, r.m.seed).is_empty()).count();
            let cut = if masked.is_empty() { "—".to_string() } else { format!("{cut} of {}", masked.len()) };
            let trained: Vec<bool> = runs_of(recs, v, d).filter_map(stalled).collect();
            let stall = if trained.is_empty() {
                "—".to_string()
            } else {
                format!("{} of {}", trained.iter().filter(|s| **s).count(), trained.len())
            };
            writeln!(
                md,
                "| {v} | {n} | {} | {} | {} | {} | {cut} | {stall} |",
                cell(Measure::Clean),
                cell(Measure::Pgd),
                cell(Measure::Worst),
                cell(Measure::AutoAttack)
            )?;
        }
        md += &stalled_finding(recs, d);
        md += "\n| AWT − other, robust accuracy (points) | paired seeds | difference [95 % CI] | verdict on \"AWT above\" |\n|---|---|---|---|\n";
        let awt = by_seed(recs, "awt", d, |r| r.measure(head));
        for v in vs.iter().filter(|v| *v != "awt") {
            let s = paired(&awt, &by_seed(recs, v, d, |r| r.measure(head)));
            if s.n > 0 {
                let verdict = match beyond::not_followed_up(recs, v, d) {
                    Some(plain) if s.n == 1 => {
                        format!(
                            "none: {v} was not above plain {} at its first seed, so not run at more",
                            beyond::prose(plain)
                        )
                    }
                    _ => above(&s).to_string(),
                };
                writeln!(md, "| AWT − {v} | {} | {} | {verdict} |", s.n, s.pct_ci())?;
            }
        }
        md += "\n";
    }
    if let Some(s) = &spec {
        md += &claims::budgets(s, recs);
    }
    md += &claims(recs, &densities, head)?;
    md += &beyond::ablations(recs, &vs, &densities, head, spec.as_ref())?;
    md += &beyond::named_method(recs, &vs, head)?;
    md += &figures::vs_dense(recs, &vs, &densities, head, fig_dir)?;
    md += &figures::figures(recs, &densities, &vs, head, fig_dir)?;
    md += &search::searches(recs)?;
    md += &figures::search_curves(recs, &densities, fig_dir)?;
    md += &aa::autoattack_gain(recs, &vs, &densities)?;
    md += &dynamics::section(recs, &vs, &densities, head, spec.as_ref().and_then(|s| s.dynamics.as_ref()), fig_dir)?;
    md += "## 4. Compute\n\n";
    md += &compute(recs);
    Ok(md)
}

#[cfg(test)]
mod tests;
