//! Where the study stands: how much of each grid `results/` holds, the run time so far, the time
//! to go at the recorded medians, and the CPUs the runs computed on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::compute;
use super::data::{Rec, load};
use crate::plan::variant_of;

/// The runs the plan holds given the records (follow-ups earned so far included), each with whether
/// it is recorded (under its run's current settings).
pub(super) fn planned(spec: &crate::spec::Spec, recs: &[Rec]) -> Result<Vec<(crate::plan::Run, bool)>> {
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
pub(super) fn progress(spec: &crate::spec::Spec, recs: &[Rec]) -> Result<String> {
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

/// Study v2's stages, in the protocol's order: each preset with its runs recorded of those it plans,
/// or, for a final preset, what its selection still has to decide before it can plan.
pub(super) const V2_STAGES: [(&str, &str); 6] = [
    ("§4.1 LeNet-300-100's training budget", "select-mlp-budget"),
    ("§4.2–4.3 λ_ker, then transferred vs rewound weights (LeNet-300-100)", "select-mlp"),
    ("§4.5 LeNet-5-Caffe's training budget", "select-lenet5-budget"),
    ("§4.5 λ_ker (LeNet-5-Caffe)", "select-lenet5"),
    ("§5 the final comparison, LeNet-300-100", "final-mlp"),
    ("§5 the final comparison, LeNet-5-Caffe", "final-lenet5"),
];

/// Where study v2 stands, from the records: a table of its stages.
pub(super) fn v2_progress() -> Result<String> {
    let mut md = String::from(
        "## Study v2: where it stands\n\nEach stage's runs recorded under `results/<preset>/`, of those its preset plans \
now, the run time of the recorded runs (wall time, one thread per run), and the time the runs left need at the \
recorded median per run of their variant, and the CPUs the recorded runs computed on, with how many runs each \
(docs/selection.md has the selections' tables):\n\n\
| stage | preset | recorded | run time so far (h) | to go, estimated (h) | CPU (runs) |\n|---|---|---|---|---|---|\n",
    );
    let (mut so_far, mut to_go, mut unplanned) = (0.0, 0.0, false);
    // Per CPU: the time to go at the medians of the runs that computed on it (a stage without such
    // runs at all its runs' medians), so that runs several times apart in speed are not averaged.
    let mut stage_estimates: Vec<(Option<f64>, BTreeMap<String, f64>)> = Vec::new();
    for (stage, preset) in V2_STAGES {
        let Ok(spec) = crate::spec::load(preset) else { continue };
        let recs = load(preset)?;
        // (+ 0.0: an empty f64 sum is −0.0, printed "-0.0")
        let hours: f64 = recs.iter().map(|r| r.m.wall_seconds).sum::<f64>() / 3600.0 + 0.0;
        so_far += hours;
        let (cell, left) = match planned(&spec, &recs) {
            Ok(runs) => {
                let left: Vec<String> =
                    runs.iter().filter(|r| !r.1).map(|(r, _)| variant_of(&r.name, &r.arch)).collect();
                let h = compute::hours_left(&recs, &left);
                to_go += h.unwrap_or(0.0);
                unplanned |= h.is_none() && !left.is_empty();
                let done = runs.len() - left.len();
                let mut cell = format!("{done} of {}", runs.len());
                // Records this plan does not count: a run's settings changed since (it is run again
                // and its record replaced), or a run the preset no longer plans.
                if recs.len() > done {
                    cell += &format!(" ({} more under other settings)", recs.len() - done);
                }
                let by_cpu = by_cpu(&recs, &left);
                let estimate = match (h, by_cpu.len()) {
                    (None, _) => {
                        if left.is_empty() {
                            "0".into()
                        } else {
                            "—".into()
                        }
                    }
                    (Some(h), 0 | 1) => format!("{h:.1}"),
                    (Some(_), _) => by_cpu
                        .iter()
                        .map(|(c, h)| format!("{h:.1} (by the runs on {c})"))
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                stage_estimates.push((h, by_cpu));
                (cell, estimate)
            }
            Err(e) => {
                let why = format!("{e:#}");
                let why = why.split(": [selected]: ").last().unwrap_or(&why).to_string();
                unplanned = true;
                (format!("plans once its selection decides ({why})"), "—".to_string())
            }
        };
        let _ = writeln!(md, "| {stage} | `{preset}` | {cell} | {hours:.1} | {left} | {} |", cpus_of(&recs));
    }
    // Every CPU with runs in a stage that has runs left, and the total at its medians.
    let cpus: std::collections::BTreeSet<&String> = stage_estimates.iter().flat_map(|(_, b)| b.keys()).collect();
    let per_cpu: Vec<String> = cpus
        .iter()
        .map(|c| {
            let h: f64 = stage_estimates.iter().map(|(all, b)| b.get(*c).copied().or(*all).unwrap_or(0.0)).sum();
            format!("{h:.1} h at the medians of the runs on {c}")
        })
        .collect();
    let _ = writeln!(
        md,
        "\nRun time so far: {so_far:.1} h; to go, estimated: {to_go:.1} h at the medians of all recorded runs{}{}. Two runs \
share the 2-core machine at a time, each on one thread, so the wall-clock time is about half the run time; a run's \
wall time also counts the time it waited for a core while other work ran beside it. Run times are those of the CPU \
each run computed on: the same run can take several times as long on one CPU as on another, so where a stage's runs \
computed on more than one CPU its estimate is given at each one's medians (a variant not yet run on that CPU at its \
plain method's, else at all of that CPU's runs').",
        if per_cpu.len() > 1 {
            format!(" ({}; a stage without runs on a CPU counted at all its runs' medians)", per_cpu.join("; "))
        } else {
            String::new()
        },
        if unplanned {
            ", not counting the stages marked —, which have no recorded run of their own to estimate from"
        } else {
            ""
        }
    );
    Ok(md + "\n")
}

/// Hours to go for the `left` runs at the medians of the runs of `recs` on each CPU (runs that
/// name none left out), by CPU.
fn by_cpu(recs: &[Rec], left: &[String]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if left.is_empty() {
        return out;
    }
    let cpus: std::collections::BTreeSet<&str> = recs.iter().filter_map(|r| r.m.cpu.as_deref()).collect();
    for c in cpus {
        let on = recs.iter().filter(|r| r.m.cpu.as_deref() == Some(c)).map(|r| &r.m);
        if let Some(h) = crate::records::hours_left(on, left) {
            out.insert(c.to_string(), h);
        }
    }
    out
}

/// The CPUs `recs` computed on, each with its count of runs ("—" for none).
fn cpus_of(recs: &[Rec]) -> String {
    let mut cpus: BTreeMap<&str, usize> = BTreeMap::new();
    for r in recs {
        *cpus.entry(r.m.cpu.as_deref().unwrap_or("not recorded")).or_default() += 1;
    }
    if cpus.is_empty() {
        return "—".into();
    }
    cpus.iter().map(|(c, n)| format!("{c} ({n})")).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::super::tests::rec;
    use super::*;

    /// The time to go is estimated at each CPU's own medians: a variant run on both at 1 h and 4 h
    /// is not averaged across them, a variant not yet run on a CPU takes that CPU's other runs'
    /// median, and runs that name no CPU stay out.
    #[test]
    fn the_time_to_go_is_estimated_per_cpu() {
        let timed = |method: &str, seed: u64, cpu: Option<&str>, hours: f64| {
            let mut r = rec(method, 0.05, seed, (0.8, 0.6, 0.6), 1000, Vec::new());
            r.m.cpu = cpu.map(str::to_string);
            r.m.timings_seconds.insert("init".into(), 1.0);
            r.m.stopped_seconds = Some(0.0);
            r.m.wall_seconds = hours * 3600.0;
            r
        };
        let recs = vec![
            timed("awt", 0, Some("slow"), 4.0),
            timed("awt", 1, Some("fast"), 1.0),
            timed("random", 0, Some("slow"), 2.0),
            timed("random", 1, None, 9.0),
        ];
        let left = vec!["awt".to_string(), "random".to_string()];
        let b = by_cpu(&recs, &left);
        assert_eq!(b.len(), 2, "{b:?}");
        assert!((b["slow"] - 6.0).abs() < 1e-9, "awt 4 h + random 2 h: {b:?}");
        assert!((b["fast"] - 2.0).abs() < 1e-9, "awt 1 h, random at the fast CPU's only median: {b:?}");
        assert!(by_cpu(&recs, &[]).is_empty(), "nothing left: no estimate");
    }
}
