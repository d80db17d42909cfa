//! The study report's compute table: wall time per run and per phase for each variant, from the
//! manifests' step timings.

use super::data::{Rec, variants};
use crate::records::median;

/// Hours of running the `left` runs need, from the recorded runs' median times ([`crate::records::hours_left`]).
pub(super) fn hours_left(recs: &[Rec], left: &[String]) -> Option<f64> {
    crate::records::hours_left(recs.iter().map(|r| &r.m), left)
}

/// The compute each variant took: wall time per run (median, and its phases) and in total, from
/// the manifests' timings.
pub(super) fn compute(recs: &[Rec]) -> String {
    let mut md = String::from(
        "Compute (wall time on the 2-core machine; some runs shared it with builds or a second run, and the times of \
runs recorded before the runner discounted pauses (2026-12-05) include any time the grid was stopped for a benchmark, \
so medians say more than totals):\n\n\
| ticket | runs | median per run (min) | of which ticket search / pruning | training | evaluation | total (h) |\n|---|---|---|---|---|---|---|\n",
    );
    let mut vs: Vec<String> = recs.iter().map(Rec::variant).collect();
    vs.dedup();
    let order = variants(recs);
    vs.sort_by_key(|v| order.iter().position(|o| o == v));
    vs.dedup();
    let mut total = 0.0;
    // A variant's medians come from its complete runs where there are any.
    let partial: Vec<String> = recs.iter().filter(|r| !r.m.timed_in_full()).map(|r| r.m.name.clone()).collect();
    for v in &vs {
        let all: Vec<&Rec> = recs.iter().filter(|r| r.variant() == *v).collect();
        let whole: Vec<&Rec> = all.iter().copied().filter(|r| r.m.timed_in_full()).collect();
        let rs = if whole.is_empty() { all.clone() } else { whole };
        // A phase's median over the runs that have it; "—" where none does.
        let phase = |keys: &[&str]| {
            let v: Vec<f64> = rs
                .iter()
                .filter(|r| keys.iter().any(|k| r.m.timings_seconds.contains_key(*k)))
                .map(|r| keys.iter().filter_map(|k| r.m.timings_seconds.get(*k)).sum::<f64>() / 60.0)
                .collect();
            if v.is_empty() { "—".to_string() } else { format!("{:.1}", median(v)) }
        };
        let sum: f64 = all.iter().map(|r| r.m.wall_seconds).sum();
        total += sum;
        md += &format!(
            "| {v} | {} | {:.1} | {} | {} | {} | {:.2} |\n",
            all.len(),
            median(rs.iter().map(|r| r.m.wall_seconds / 60.0).collect()),
            phase(&["search", "prune", "imp-at", "hydra", "pretrain-train"]),
            phase(&["train"]),
            phase(&["eval", "eval-aa", "dynamics", "mask"]),
            sum / 3600.0
        );
    }
    // Which `awt` builds produced the records (the same numbers up to floating-point order, but
    // a reader should be able to tell).
    let mut builds: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for r in recs {
        *builds.entry(r.m.git_commit.chars().take(7).collect()).or_default() += 1;
    }
    let builds: Vec<String> =
        builds.iter().map(|(c, n)| format!("`{c}` ({n} run{})", if *n == 1 { "" } else { "s" })).collect();
    md += &format!(
        "\nAll recorded runs together: {:.1} h. Built from commit{} {}.",
        total / 3600.0,
        if builds.len() == 1 { "" } else { "s" },
        builds.join(", ")
    );
    // HYDRA planned with `link_pretraining` took its pretrained net from the dense run of its seed.
    let reused = recs
        .iter()
        .filter(|r| r.m.timings_seconds.contains_key("hydra") && !r.m.timings_seconds.contains_key("pretrain-train"))
        .count();
    if reused > 0 {
        md += &format!(
            " {reused} HYDRA run{} took {} pretrained net from the dense run of {} seed (that run's kept epoch; the \
training is counted there, not in HYDRA's row).",
            if reused == 1 { "" } else { "s" },
            if reused == 1 { "its" } else { "their" },
            if reused == 1 { "its" } else { "their" },
        );
    }
    if !partial.is_empty() {
        md += &format!(
            " {} run{} ({}) {} resumed before step timings carried across sittings: {} earlier sittings are missing, so {} time counts low (left out of the medians, kept in the totals).",
            partial.len(),
            if partial.len() == 1 { "" } else { "s" },
            partial.join(", "),
            if partial.len() == 1 { "was" } else { "were" },
            if partial.len() == 1 { "its" } else { "their" },
            if partial.len() == 1 { "its" } else { "their" },
        );
    }
    md + "\n\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HYDRA run without a pretraining time took its pretrained net from the dense run, and the
    /// table says so; one with its own pretraining does not count.
    #[test]
    fn hydra_runs_that_reused_the_dense_runs_epoch_are_named() {
        let mut recs: Vec<Rec> =
            (0..3).map(|s| super::super::tests::rec("hydra", 0.05, s, (0.8, 0.6, 0.5), 100, Vec::new())).collect();
        for r in &mut recs {
            r.m.timings_seconds.insert("hydra".into(), 10.0);
        }
        recs[2].m.timings_seconds.insert("pretrain-train".into(), 50.0);
        let md = compute(&recs);
        assert!(md.contains(" 2 HYDRA runs took their pretrained net from the dense run of their seed"), "{md}");
        recs[0].m.timings_seconds.insert("pretrain-train".into(), 50.0);
        recs[1].m.timings_seconds.insert("pretrain-train".into(), 50.0);
        assert!(!compute(&recs).contains("pretrained net from the dense run"));
    }
}
