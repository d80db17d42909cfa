//! §3 of the study report: the kernel dynamics, measured against the dense net *at the same epoch*
//! (the "right way"): per ticket and density a table of the four measures, what became of
//! the match a search made at initialisation, and the measures over epochs with bands over seeds.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::data::{DynLine, Measure, Rec, over_training, runs_of};
use super::figures::{seed_band, write_figure};
use crate::plot::{Figure, Series, Spread};
use crate::spec::plain_of;
use crate::stats::spearman;
use crate::stats::summary;

/// The tickets drawn over epochs (the others sit in the tables): the searched ones, the baseline
/// the claim compares with, the best mask at initialisation and the train → prune methods.
const DRAWN: [&str; 6] = ["awt", "ntt", "random", "snip", "imp-at", "hydra"];

/// "m ± sd" over seeds, "m" for one, "—" for none: 3 decimals, 1 from 10 up (the own change of a
/// kernel that starts small runs to tens of its norm).
fn cell(v: &[f64]) -> String {
    let s = summary(v);
    let p = if s.mean.abs() >= 10.0 { 1 } else { 3 };
    match s.n {
        0 => "—".into(),
        1 => format!("{:.p$}", s.mean),
        _ => format!("{:.p$} ± {:.p$}", s.mean, s.sd),
    }
}

/// Per seed, one value taken from a run's dynamics (runs without it left out).
fn per_run(recs: &[Rec], v: &str, d: f64, pick: impl Fn(&[DynLine]) -> Option<f64>) -> Vec<f64> {
    runs_of(recs, v, d).filter_map(|r| pick(&r.dynamics)).collect()
}

fn at_epoch(dy: &[DynLine], epoch: u64, f: impl Fn(&DynLine) -> Option<f64>) -> Option<f64> {
    dy.iter().find(|e| e.epoch == epoch).and_then(f)
}

fn at_end(dy: &[DynLine], f: impl Fn(&DynLine) -> Option<f64>) -> Option<f64> {
    dy.last().filter(|e| e.epoch >= 1).and_then(f)
}

/// The dense net's side of the dynamics, one per seed in seed order: every ticket of a seed is
/// compared with the same dense run, so the first ticket's records carry it.
fn dense_per_seed(recs: &[Rec]) -> Vec<&[DynLine]> {
    let mut per_seed = std::collections::BTreeMap::new();
    for r in recs.iter().filter(|r| !r.dynamics.is_empty()) {
        per_seed.entry(r.m.seed).or_insert(r.dynamics.as_slice());
    }
    per_seed.into_values().collect()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Section 3: the dynamics of every recorded ticket against the dense net of its seed.
/// `vs`: the tickets (methods, then ablations) in report order.
/// `head`: the robust accuracy the dynamics are set against; `probe`: the preset's `[dynamics]`.
pub(super) fn section(
    recs: &[Rec],
    vs: &[String],
    densities: &[f64],
    head: Measure,
    probe: Option<&crate::spec::DynamicsSpec>,
    fig_dir: &Path,
) -> Result<String> {
    let mut md = String::from("## 3. Dynamics, measured against the dense net at the same epoch\n\n");
    if !recs.iter().any(|r| !r.dynamics.is_empty()) {
        md += "No kernel dynamics recorded yet (`[dynamics]` in the preset; `awt dynamics`).\n\n";
        return Ok(md);
    }
    // The dense net's own kernel change at the end.
    let dense_end: Vec<f64> =
        dense_per_seed(recs).iter().filter_map(|dy| at_end(dy, |e| Some(e.dense_change))).collect();
    let probe = match probe {
        Some(d) => format!("the first {} test images and their PGD-{} examples", d.probe, d.steps),
        None => "the first test images and their PGD examples".to_string(),
    };
    writeln!(
        md,
        "At initialisation (epoch 0) and after each training epoch, every ticket and the dense net trained with the same \
seed and data order are compared on one fixed probe set: {probe} against the dense \
net at that epoch, the same points for every net of a seed. Θ is each net's empirical NTK on those points (every logit). \
Measured: the relative distance ‖Θ_s,t − Θ_d,t‖ / ‖Θ_d,t‖ and the alignment ⟨Θ_s,t, Θ_d,t⟩ / (‖Θ_s,t‖ ‖Θ_d,t‖) to the \
dense net at the same epoch; each net's own kernel change ‖Θ_t − Θ_0‖ / ‖Θ_0‖ from its initialisation; and the gap \
between its training loss and the dense net's per epoch. By the end of training the dense net's own kernel has moved {} \
times its initial norm, so closeness to the dense *initial* kernel says little about training; these measures follow the \
dense net as it trains. How to read them: a distance near 1 with an alignment well above 0 means a kernel pointing the \
dense net's way but much smaller; a net whose kernel starts that small (a mask keeping its initial weights' scale) \
shows an own change of many times its initial norm.\n",
        cell(&dense_end)
    )?;
    for &d in densities {
        md += &table(recs, vs, d);
    }
    let Some(d0) = nearest(densities) else { return Ok(md) };
    md += &finding(recs, d0);
    md += &correlation(recs, d0, head);
    md += &scatter(recs, d0, head, fig_dir)?;
    md += &figures(recs, d0, fig_dir)?;
    Ok(md)
}

/// One density's table: the kernel distance at initialisation, after epoch 1 and at the end, its
/// mean over training, the alignment, the own change, and the loss gap, each mean ± sd over seeds.
fn table(recs: &[Rec], vs: &[String], d: f64) -> String {
    let mut md = format!(
        "Density {d} (mean ± sd over seeds; \"mean\" is over the trained epochs, as the claims use it):\n\n\
| ticket | seeds | kernel distance at init | after epoch 1 | at the end | mean | alignment, mean | own kernel change at the end | loss gap, epoch 1 | at the end | mean absolute gap |\n\
|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut rows = 0;
    for v in vs.iter().map(String::as_str).filter(|v| *v != "dense") {
        let n = runs_of(recs, v, d).filter(|r| !r.dynamics.is_empty()).count();
        if n == 0 {
            continue;
        }
        rows += 1;
        let dist = |e: &DynLine| Some(e.rel_distance);
        let gap = |e: &DynLine| e.loss_gap;
        let cols = [
            cell(&per_run(recs, v, d, |dy| at_epoch(dy, 0, dist))),
            cell(&per_run(recs, v, d, |dy| at_epoch(dy, 1, dist))),
            cell(&per_run(recs, v, d, |dy| at_end(dy, dist))),
            cell(&per_run(recs, v, d, |dy| over_training(dy, dist))),
            cell(&per_run(recs, v, d, |dy| over_training(dy, |e| Some(e.alignment)))),
            cell(&per_run(recs, v, d, |dy| at_end(dy, |e| Some(e.sparse_change)))),
            cell(&per_run(recs, v, d, |dy| at_epoch(dy, 1, gap))),
            cell(&per_run(recs, v, d, |dy| at_end(dy, gap))),
            cell(&per_run(recs, v, d, |dy| over_training(dy, |e| e.loss_gap.map(f64::abs)))),
        ];
        writeln!(md, "| {v} | {n} | {} |", cols.join(" | ")).ok();
    }
    if rows == 0 {
        return String::new();
    }
    md + "\n"
}

/// AWT's and random's mean kernel distance to the dense net (over seeds) at initialisation, after
/// the first epoch and at the end.
struct Lead {
    awt: [f64; 3],
    random: [f64; 3],
}

impl Lead {
    fn of(recs: &[Rec], d: f64) -> Option<Lead> {
        let dist = |e: &DynLine| Some(e.rel_distance);
        let three = |v: &str| -> Option<[f64; 3]> {
            Some([
                mean(&per_run(recs, v, d, |dy| at_epoch(dy, 0, dist)))?,
                mean(&per_run(recs, v, d, |dy| at_epoch(dy, 1, dist)))?,
                mean(&per_run(recs, v, d, |dy| at_end(dy, dist)))?,
            ])
        };
        Some(Lead { awt: three("awt")?, random: three("random")? })
    }

    /// Random's distance minus AWT's at initialisation, after epoch 1, at the end.
    fn lead(&self, i: usize) -> f64 {
        self.random[i] - self.awt[i]
    }

    /// The share of the initial lead left after epoch 1 and at the end, in percent (None without a lead).
    fn left(&self) -> Option<(f64, f64)> {
        let l0 = self.lead(0);
        (l0 > 0.0).then(|| (100.0 * self.lead(1) / l0, 100.0 * self.lead(2) / l0))
    }
}

/// What became of the searched match: AWT's kernel distance and loss gap beside random's at
/// initialisation, after the first epoch and at the end (means over seeds).
fn finding(recs: &[Rec], d: f64) -> String {
    let Some(l) = Lead::of(recs, d) else { return String::new() };
    let ([a0, a1, ae], [r0, r1, re]) = (l.awt, l.random);
    let mut md = format!(
        "**Finding** (density {d}, means over seeds). At initialisation AWT's kernel is {a0:.3} from the dense net's \
against {r0:.3} for a random ticket: "
    );
    match l.left() {
        Some((k1, ke)) => write!(
            md,
            "the search matched the kernel, a lead of {:.3}. After one epoch of adversarial training the distances \
are {a1:.3} and {r1:.3} (a lead of {:.3}, {k1:.0} % of it left), and at the end {ae:.3} and {re:.3} ({ke:.0} % left).",
            l.lead(0),
            l.lead(1)
        ),
        None => write!(
            md,
            "the search did not bring it closer. After one epoch: {a1:.3} and {r1:.3}; at the end {ae:.3} and {re:.3}."
        ),
    }
    .ok();
    let m = |v: &str, pick: &dyn Fn(&[DynLine]) -> Option<f64>| mean(&per_run(recs, v, d, pick));
    let gap = |e: &DynLine| e.loss_gap;
    if let (Some(g1), Some(ge), Some(q1), Some(qe)) = (
        m("awt", &|dy| at_epoch(dy, 1, gap)),
        m("awt", &|dy| at_end(dy, gap)),
        m("random", &|dy| at_epoch(dy, 1, gap)),
        m("random", &|dy| at_end(dy, gap)),
    ) {
        write!(
            md,
            " AWT's training loss is {g1:+.2} from the dense net's in the first epoch (random's {q1:+.2}) and {ge:+.2} in the \
last (random's {qe:+.2})."
        )
        .ok();
    }
    md + "\n\n"
}

/// Spearman's ρ of robust accuracy with the kernel distance to the dense net over every run of one
/// density, at initialisation and over training, each with whether it differs from 0 at 5 %.
struct Corr {
    n: usize,
    init: (f64, bool),
    during: (f64, bool),
}

impl Corr {
    fn of(recs: &[Rec], d: f64, head: Measure) -> Option<Corr> {
        let runs: Vec<&Rec> =
            recs.iter().filter(|r| (r.m.density.get() - d).abs() < 1e-12 && !r.dynamics.is_empty()).collect();
        let dist = |e: &DynLine| Some(e.rel_distance);
        let rho = |pick: &dyn Fn(&[DynLine]) -> Option<f64>| {
            let (x, y): (Vec<f64>, Vec<f64>) =
                runs.iter().filter_map(|r| Some((pick(&r.dynamics)?, r.measure(head)?))).unzip();
            spearman(&x, &y).map(|r| (x.len(), r))
        };
        let (n, init) = rho(&|dy| at_epoch(dy, 0, dist))?;
        let (_, during) = rho(&|dy| over_training(dy, dist))?;
        Some(Corr { n, init, during })
    }
}

fn rho_said((rho, decided): (f64, bool)) -> String {
    let said =
        if decided { "different from 0 at the 5 % level" } else { "not distinguishable from 0 at the 5 % level" };
    format!("ρ = {rho:+.2}, {said}")
}

/// Whether closeness to the dense kernel goes with robustness over every run of one density.
fn correlation(recs: &[Rec], d: f64, head: Measure) -> String {
    let Some(c) = Corr::of(recs, d, head) else { return String::new() };
    format!(
        "**Does a closer kernel go with robustness?** Over the {} runs at density {d} (every ticket and variant, every \
seed), the rank correlation (Spearman) of robust accuracy with the kernel distance to the dense net at initialisation is \
{}; with the mean distance over training, {}. If staying close to the dense net's kernel made a ticket robust, \
both would be clearly negative. The runs share seeds and families of masks, so this describes the grid rather than \
testing a hypothesis.\n\n",
        c.n,
        rho_said(c.init),
        rho_said(c.during)
    )
}

/// The series a run's dot joins in the scatter: plain AWT, its variants together, else the plain
/// method (a mask's variants with it), so that the families stay within the palette.
fn family(v: &str) -> String {
    if v.starts_with("awt-") { "awt variants".into() } else { plain_of(v).unwrap_or(v).to_string() }
}

/// Robust accuracy against the kernel distance to the dense net, one dot per run, at
/// initialisation and averaged over training: the correlation above, drawn.
fn scatter(recs: &[Rec], d: f64, head: Measure, fig_dir: &Path) -> Result<String> {
    type Pick = fn(&[DynLine]) -> Option<f64>;
    let views: [(&str, &str, &str, Pick); 2] = [
        (
            "study-dyn-vs-robust-init.svg",
            "kernel distance at initialisation",
            "kernel distance to the dense net at initialisation",
            |dy| at_epoch(dy, 0, |e| Some(e.rel_distance)),
        ),
        (
            "study-dyn-vs-robust-mean.svg",
            "mean kernel distance over training",
            "mean kernel distance to the dense net, same epoch",
            |dy| over_training(dy, |e| Some(e.rel_distance)),
        ),
    ];
    let mut md = String::new();
    for (file, what, xlabel, pick) in views {
        let mut series: Vec<Series> = Vec::new();
        for r in recs.iter().filter(|r| (r.m.density.get() - d).abs() < 1e-12) {
            let (Some(x), Some(y)) = (pick(&r.dynamics), r.measure(head)) else { continue };
            let name = family(&r.variant());
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((x, 100.0 * y)),
                None => series.push(Series::line(name, vec![(x, 100.0 * y)])),
            }
        }
        if series.is_empty() {
            continue;
        }
        // AWT and its variants first (the palette's first colours), then the methods' order.
        let order = |s: &Series| match s.name.as_str() {
            "awt" => (0, 0),
            "awt variants" => (1, 0),
            m => (2, crate::spec::METHODS.iter().position(|x| *x == m).unwrap_or(usize::MAX)),
        };
        series.sort_by_key(order);
        let title = format!("robust accuracy vs {what} (density {d}, one dot per run)");
        let fig = Figure {
            title: &title,
            xlabel,
            ylabel: "robust accuracy (%)",
            logx: false,
            logy: false,
            spread: Spread::Points,
        };
        write_figure(fig_dir, file, &fig, &series)?;
        writeln!(md, "![{title}](figures/{file})\n")?;
    }
    Ok(md)
}

/// The section's findings in one paragraph for the report's top, at the density nearest 0.05.
pub(super) fn glance(recs: &[Rec], densities: &[f64], head: Measure) -> Option<String> {
    let d = nearest(densities)?;
    let mut parts = Vec::new();
    if let Some(l) = Lead::of(recs, d) {
        parts.push(match l.left() {
            Some((k1, ke)) => format!(
                "AWT's tickets start {:.3} closer to the dense net's kernel than random tickets (relative distance); \
{k1:.0} % of that lead is left after the first epoch of training, {ke:.0} % at the end",
                l.lead(0)
            ),
            None => "AWT's tickets do not start closer to the dense net's kernel than random tickets".to_string(),
        });
    }
    if let Some(c) = Corr::of(recs, d, head) {
        let which = match (c.init.1, c.during.1) {
            (false, false) => "neither distinguishable from 0",
            (true, true) => "both different from 0",
            (true, false) => "only the first different from 0",
            (false, true) => "only the second different from 0",
        };
        parts.push(format!(
            "over the {} runs, robust accuracy is rank-correlated with the kernel distance to the dense net by ρ = {:+.2} \
at initialisation and {:+.2} over training ({which} at the 5 % level)",
            c.n, c.init.0, c.during.0
        ));
    }
    (!parts.is_empty()).then(|| format!("**Dynamics** (§3, density {d}): {}.", parts.join("; ")))
}

/// The density nearest 0.05, where the paper's main comparison sits.
fn nearest(densities: &[f64]) -> Option<f64> {
    densities.iter().copied().min_by(|a, b| (a - 0.05).abs().total_cmp(&(b - 0.05).abs()))
}

/// One measure over epochs: its file, title, axis label, whether a log axis, and how it is read.
type View = (&'static str, &'static str, &'static str, bool, fn(&DynLine) -> Option<f64>);

/// The kernel distance to the dense net at the same epoch (the protocol's dynamics measure).
const DISTANCE: View = (
    "study-dyn-distance.svg",
    "kernel distance to the dense net at the same epoch",
    "‖Θ_s,t − Θ_d,t‖ / ‖Θ_d,t‖",
    true,
    |e| Some(e.rel_distance),
);

/// The four measures over epochs, mean ± sd over seeds, at one density.
fn figures(recs: &[Rec], d0: f64, fig_dir: &Path) -> Result<String> {
    let measures: [View; 4] = [
        DISTANCE,
        (
            "study-dyn-alignment.svg",
            "kernel alignment with the dense net at the same epoch",
            "⟨Θ_s,t, Θ_d,t⟩ / (‖Θ_s,t‖ ‖Θ_d,t‖)",
            false,
            |e| Some(e.alignment),
        ),
        (
            "study-dyn-own-change.svg",
            "each net's kernel change from its initialisation",
            "‖Θ_t − Θ_0‖ / ‖Θ_0‖",
            true,
            |e| Some(e.sparse_change),
        ),
        ("study-dyn-loss-gap.svg", "training loss minus the dense net's", "loss gap (sparse − dense)", false, |e| {
            e.loss_gap
        }),
    ];
    let mut md = String::new();
    for view in measures {
        md += &measure_figure(recs, d0, fig_dir, &DRAWN, view.0, view)?;
    }
    Ok(md)
}

/// Study v2's dynamics figure of one net and density (protocol §6): the kernel distance to the
/// dense net at the same epoch over epochs 0..T, mean ± sd over seeds, for `drawn` variants.
pub(super) fn distance_figure(recs: &[Rec], d0: f64, fig_dir: &Path, drawn: &[&str], file: &str) -> Result<String> {
    measure_figure(recs, d0, fig_dir, drawn, file, DISTANCE)
}

/// One measure's figure (empty where no drawn variant has dynamics at `d0`), written to `file`.
fn measure_figure(recs: &[Rec], d0: f64, fig_dir: &Path, drawn: &[&str], file: &str, view: View) -> Result<String> {
    let (kind, title, ylabel, logy, get) = view;
    let mut ks = Vec::new();
    for v in drawn {
        let per: Vec<Vec<(f64, f64)>> = runs_of(recs, v, d0)
            .map(|r| r.dynamics.iter().filter_map(|e| Some((e.epoch as f64, get(e)?))).collect())
            .collect();
        ks.extend(seed_band(v, &per));
    }
    if kind == "study-dyn-own-change.svg" {
        // The dense net's own change.
        let per_seed: Vec<Vec<(f64, f64)>> = dense_per_seed(recs)
            .iter()
            .map(|dy| dy.iter().map(|e| (e.epoch as f64, e.dense_change)).collect())
            .collect();
        ks.extend(seed_band("dense", &per_seed));
    }
    if ks.is_empty() {
        return Ok(String::new());
    }
    let title = format!("{title} (density {d0}, mean ± sd over seeds)");
    let log_ok = ks.iter().all(|s| s.points.iter().all(|p| p.1 > 0.0));
    let fig =
        Figure { title: &title, xlabel: "epoch", ylabel, logx: false, logy: logy && log_ok, spread: Spread::Band };
    write_figure(fig_dir, file, &fig, &ks)?;
    Ok(format!("![{title}](figures/{file})\n\n"))
}

#[cfg(test)]
mod tests;
