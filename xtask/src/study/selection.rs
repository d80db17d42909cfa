//! docs/selection.md: study v2's selections on the validation split (docs/protocol.md §4), every
//! candidate with its per-seed scores, and the value each rule selects — computed here from the
//! records, never picked by hand. A rule decides only once every candidate has every selection seed.

use std::fmt::Write as _;

use std::path::Path;

use anyhow::Result;

use super::data::{Rec, load};
use crate::plot::{Figure, Series, Spread};
use crate::spec::Spec;

/// One candidate: a variant of the preset, what it sets, and its validation scores by seed.
struct Candidate {
    variant: String,
    /// What the candidate sets, in words (`30 epochs, cosine`, `λ_ker 0.01`).
    label: String,
    /// The candidate's cost or size for the rules' tie-breaks (epochs; λ_ker).
    key: f64,
    scores: Vec<(u64, f64)>,
}

impl Candidate {
    fn mean(&self) -> f64 {
        self.scores.iter().map(|s| s.1).sum::<f64>() / self.scores.len().max(1) as f64
    }
}

/// The value of an ablation's flag, else the base setting.
fn flag(spec: &Spec, variant: &str, method: &str, key: &str) -> Option<String> {
    let name = variant.strip_prefix(&format!("{method}-"))?;
    let ab = spec.ablations.iter().find(|a| a.method == method && a.name == name)?;
    ab.flags.get(key).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
}

fn scores(recs: &[Rec], variant: &str, density: f64) -> Vec<(u64, f64)> {
    super::data::by_seed(recs, variant, density, |r| Some(r.m.robust()))
}

/// The candidates of `method` at `density` in `spec`: the base runs and each ablation of the method.
fn candidates(spec: &Spec, recs: &[Rec], method: &str, density: f64) -> Vec<Candidate> {
    let mut variants = vec![method.to_string()];
    variants.extend(spec.ablations.iter().filter(|a| a.method == method).map(|a| format!("{method}-{}", a.name)));
    variants
        .into_iter()
        .map(|v| {
            let (label, key) = if method == "dense" {
                let epochs = flag(spec, &v, method, "epochs").unwrap_or_else(|| spec.train.epochs.to_string());
                let schedule = flag(spec, &v, method, "schedule")
                    .unwrap_or_else(|| spec.train.schedule.clone().unwrap_or_else(|| "constant".into()));
                (format!("{epochs} epochs, {schedule}"), epochs.parse().unwrap_or(f64::NAN))
            } else {
                let l = flag(spec, &v, method, "lambda-ker").unwrap_or_else(|| spec.search.lambda_ker.to_string());
                (format!("λ_ker {l}"), l.parse().unwrap_or(f64::NAN))
            };
            Candidate { scores: scores(recs, &v, density), variant: v, label, key }
        })
        .collect()
}

/// The rule of protocol §4.1: the cheapest candidate (fewest epochs; at equal epochs the higher
/// mean) whose mean is within 0.5 points of the best mean.
fn cheapest_within(c: &[Candidate], margin: f64) -> usize {
    let best = c.iter().map(Candidate::mean).fold(f64::NEG_INFINITY, f64::max);
    let mut ok: Vec<usize> = (0..c.len()).filter(|&i| c[i].mean() >= best - margin).collect();
    ok.sort_by(|&a, &b| c[a].key.total_cmp(&c[b].key).then(c[b].mean().total_cmp(&c[a].mean())));
    ok[0]
}

/// The rule of protocol §4.2: the highest mean; a tie (to `tie` points) goes to the smaller value.
fn best_smaller_on_tie(c: &[Candidate], tie: f64) -> usize {
    let best = c.iter().map(Candidate::mean).fold(f64::NEG_INFINITY, f64::max);
    let mut ok: Vec<usize> = (0..c.len()).filter(|&i| c[i].mean() >= best - tie).collect();
    ok.sort_by(|&a, &b| c[a].key.total_cmp(&c[b].key));
    ok[0]
}

/// The rule of protocol §4.3 over `[transferred, rewound]`: the higher mean; a tie (to `tie`)
/// keeps the transferred weights.
fn rewound_if_better(c: &[Candidate], tie: f64) -> usize {
    usize::from(c[1].mean() > c[0].mean() + tie)
}

/// The variant selected among `c` by `pick`, once every candidate has every seed.
fn selected<'a>(c: &'a [Candidate], seeds: &[u64], pick: impl Fn(&[Candidate]) -> usize) -> Option<&'a Candidate> {
    let complete = c.iter().all(|x| seeds.iter().all(|s| x.scores.iter().any(|(t, _)| t == s)));
    complete.then(|| &c[pick(c)])
}

/// One selection as a table with the selected row marked, or a note of what is missing.
fn table(c: &[Candidate], seeds: &[u64], pick: impl Fn(&[Candidate]) -> usize, what: &str) -> String {
    let mut md = String::from("| candidate | run | ");
    md += &seeds.iter().map(|s| format!("seed {s}")).collect::<Vec<_>>().join(" | ");
    md += " | mean |\n|---|---|";
    md += &"---|".repeat(seeds.len() + 1);
    md += "\n";
    let complete = c.iter().all(|x| seeds.iter().all(|s| x.scores.iter().any(|(t, _)| t == s)));
    let chosen = complete.then(|| pick(c));
    for (i, x) in c.iter().enumerate() {
        let cells: Vec<String> = seeds
            .iter()
            .map(|s| x.scores.iter().find(|(t, _)| t == s).map_or("—".into(), |(_, v)| format!("{:.2}", 100.0 * v)))
            .collect();
        let mean = if x.scores.is_empty() { "—".into() } else { format!("{:.2}", 100.0 * x.mean()) };
        let mark = if chosen == Some(i) { " **selected**" } else { "" };
        let _ = writeln!(md, "| {}{mark} | {} | {} | {mean} |", x.label, x.variant, cells.join(" | "));
    }
    md += "\n";
    match chosen {
        Some(i) => {
            let _ = writeln!(md, "**Selected {what}: {}** (`{}`).\n", c[i].label, c[i].variant);
        }
        None => {
            let done: usize = c.iter().map(|x| x.scores.len()).sum();
            let _ = writeln!(
                md,
                "Not decided yet: {done} of {} runs recorded; the rule decides once every candidate has every selection seed.\n",
                c.len() * seeds.len()
            );
        }
    }
    md
}

/// One λ_ker curve: each candidate's mean over the seeds recorded, the bar its lowest and highest
/// seed (None where nothing is recorded).
fn lambda_curve(name: &str, c: &[Candidate]) -> Option<Series> {
    let (mut points, mut spread) = (Vec::new(), Vec::new());
    let mut c: Vec<&Candidate> = c.iter().filter(|x| !x.scores.is_empty() && x.key > 0.0).collect();
    c.sort_by(|a, b| a.key.total_cmp(&b.key));
    for x in c {
        let v = x.scores.iter().map(|s| 100.0 * s.1);
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| (l.min(y), h.max(y)));
        points.push((x.key, 100.0 * x.mean()));
        spread.push((lo, hi));
    }
    (!points.is_empty()).then(|| Series { name: name.to_string(), points, spread })
}

/// The file of the λ_ker validation curves, under docs/figures/.
const LAMBDA_FIGURE: &str = "selection-lambda-ker.svg";

/// docs/selection.md from `results/select-*`, its figures written to `fig_dir`.
pub(super) fn report(fig_dir: &Path) -> Result<String> {
    let mut md = String::from(
        "# Study v2: selection on the validation split\n\nGenerated by `cargo xtask report --study` from the records under \
`results/select-*`; do not edit by hand. The rules are those of [the protocol](protocol.md) §4, fixed before these runs: \
every score is the worst-case robust accuracy (PGD-20, APGD-CE, APGD-DLR) in % on the 10,000 validation images \
(the last 10,000 training images, held out of all training); the test split is never read here.\n\n",
    );
    let budget_spec = crate::spec::load("select-mlp-budget")?;
    let budget = load("select-mlp-budget")?;
    md += "## §4.1 Training budget (dense LeNet-300-100)\n\nRule: the cheapest candidate (fewest epochs; at equal \
epochs the higher mean) whose mean is within 0.5 points of the best mean.\n\n";
    let c = candidates(&budget_spec, &budget, "dense", 1.0);
    md += &table(&c, &budget_spec.seeds, |c| cheapest_within(c, 0.005), "budget");
    if let Ok(spec) = crate::spec::load("select-mlp") {
        let recs = load("select-mlp")?;
        md += "## §4.2 λ_ker (NTT and AWT, transferred weights, output layer kept dense)\n\nRule: the highest mean per \
method and density; a tie to 0.1 point goes to the smaller λ_ker.\n\n";
        let mut rewound = String::new();
        let mut curves = Vec::new();
        for method in ["ntt", "awt"] {
            for &d in &spec.densities {
                let _ = writeln!(md, "### {} at density {d}\n", method.to_uppercase());
                let (lam, rew): (Vec<Candidate>, Vec<Candidate>) = candidates(&spec, &recs, method, d.get())
                    .into_iter()
                    .partition(|x| !x.variant.ends_with("-rewind"));
                curves.extend(lambda_curve(&format!("{} {d}", method.to_uppercase()), &lam));
                md += &table(&lam, &spec.seeds, |c| best_smaller_on_tie(c, 0.001), "λ_ker");
                // §4.3: the selected λ_ker's mask with its transferred weights against the same
                // mask rewound to the initialisation (the ablation `<variant>-rewind`).
                let Some(best) = selected(&lam, &spec.seeds, |c| best_smaller_on_tie(c, 0.001)) else { continue };
                let want = format!("{}-rewind", best.variant);
                let Some(r) = rew.into_iter().find(|x| x.variant == want) else { continue };
                let t = Candidate {
                    variant: best.variant.clone(),
                    label: format!("{}, transferred", best.label),
                    key: 0.0,
                    scores: best.scores.clone(),
                };
                let r = Candidate { label: format!("{}, rewound", best.label), key: 1.0, ..r };
                let _ = writeln!(rewound, "### {} at density {d}\n", method.to_uppercase());
                rewound += &table(&[t, r], &spec.seeds, |c| rewound_if_better(c, 0.001), "weights");
            }
        }
        if !curves.is_empty() {
            let fig = Figure {
                title: "validation robust accuracy vs λ_ker (mean; bar: lowest to highest seed)",
                xlabel: "λ_ker",
                ylabel: "worst-case robust accuracy on validation (%)",
                logx: true,
                logy: false,
                spread: Spread::Bars,
            };
            super::figures::write_figure(fig_dir, LAMBDA_FIGURE, &fig, &curves)?;
            let _ = writeln!(md, "![validation robust accuracy vs λ_ker](figures/{LAMBDA_FIGURE})\n");
        }
        if !rewound.is_empty() {
            md += "## §4.3 Transferred vs rewound weights (at each selected λ_ker)\n\nRule: the higher mean; a tie to \
0.1 point keeps the transferred weights.\n\n";
            md += &rewound;
        }
    }
    if let Ok(spec) = crate::spec::load("select-lenet5-budget") {
        let recs = load("select-lenet5-budget")?;
        md += "## §4.5 Training budget (dense LeNet-5-Caffe, reduced: one selection seed)\n\nRule: as §4.1, with the \
learning-rate schedule selected there.\n\n";
        let c = candidates(&spec, &recs, "dense", 1.0);
        md += &table(&c, &spec.seeds, |c| cheapest_within(c, 0.005), "budget");
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(label: &str, key: f64, v: &[f64]) -> Candidate {
        Candidate {
            variant: label.into(),
            label: label.into(),
            key,
            scores: v.iter().enumerate().map(|(i, x)| (i as u64, *x)).collect(),
        }
    }

    /// §4.1: the best mean is 30 epochs, but 20 epochs is within 0.5 points and cheaper; §4.2: a tie
    /// to 0.1 point goes to the smaller λ_ker, anything larger to the higher mean.
    #[test]
    fn the_rules_pick_as_the_protocol_says() {
        let c =
            vec![cand("10", 10.0, &[0.60, 0.62]), cand("20", 20.0, &[0.668, 0.670]), cand("30", 30.0, &[0.672, 0.672])];
        assert_eq!(cheapest_within(&c, 0.005), 1);
        let c =
            vec![cand("10", 10.0, &[0.60, 0.62]), cand("20", 20.0, &[0.660, 0.662]), cand("30", 30.0, &[0.672, 0.672])];
        assert_eq!(cheapest_within(&c, 0.005), 2);
        let c = vec![
            cand("1e-3", 1e-3, &[0.6405, 0.6405]),
            cand("1e-2", 1e-2, &[0.6410, 0.6410]),
            cand("1", 1.0, &[0.60, 0.60]),
        ];
        assert_eq!(best_smaller_on_tie(&c, 0.001), 0);
        let c = vec![cand("1e-3", 1e-3, &[0.630, 0.630]), cand("1e-2", 1e-2, &[0.6410, 0.6410])];
        assert_eq!(best_smaller_on_tie(&c, 0.001), 1);
        // §4.3: rewound only when its mean is more than 0.1 point higher.
        let c = vec![cand("t", 0.0, &[0.640, 0.640]), cand("r", 1.0, &[0.6405, 0.6405])];
        assert_eq!(rewound_if_better(&c, 0.001), 0);
        let c = vec![cand("t", 0.0, &[0.640, 0.640]), cand("r", 1.0, &[0.642, 0.642])];
        assert_eq!(rewound_if_better(&c, 0.001), 1);
        let c = vec![cand("t", 0.0, &[0.645, 0.645]), cand("r", 1.0, &[0.642, 0.642])];
        assert_eq!(rewound_if_better(&c, 0.001), 0);
        // The λ_ker curve: in λ order, the mean with the lowest and highest seed; unrecorded left out.
        let c = vec![cand("1e-2", 1e-2, &[0.64, 0.66]), cand("1e-3", 1e-3, &[0.60]), cand("1", 1.0, &[])];
        let s = lambda_curve("NTT 0.05", &c).unwrap();
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.points[0].0, 1e-3);
        assert!((s.points[1].1 - 65.0).abs() < 1e-9 && (s.spread[1].0 - 64.0).abs() < 1e-9);
        assert!((s.spread[1].1 - 66.0).abs() < 1e-9 && (s.spread[0].0 - 60.0).abs() < 1e-9);
        assert!(lambda_curve("none", &c[2..]).is_none());
        // Incomplete: no decision.
        let c = vec![cand("10", 10.0, &[0.6]), cand("20", 20.0, &[0.7, 0.7])];
        assert!(table(&c, &[0, 1], |c| cheapest_within(c, 0.005), "budget").contains("Not decided yet: 3 of 4"));
    }
}
