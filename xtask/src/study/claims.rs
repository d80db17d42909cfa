//! The paper's claims beside the study's paired differences, each decided by its interval.

use std::fmt::Write as _;

use anyhow::Result;

use super::data::{DynLine, Measure, Rec, by_seed, values};
use crate::decide::{beats, matches};
use crate::stats::paired;
use crate::stats::summary;

/// One claim of the paper at one density, decided by its interval.
struct Claim {
    /// The claim, the same at every density.
    claim: String,
    /// What it is compared against where that depends on the density (the best method at initialisation).
    against: String,
    density: f64,
    /// The paired difference with its interval.
    measured: String,
    verdict: &'static str,
}

/// The paper's claims beside the measured paired differences.
pub(super) fn claims(recs: &[Rec], densities: &[f64], head: Measure) -> Result<String> {
    let mut md = String::from(
        "### The paper's claims, decided by the intervals\n\n| claim (Shi et al. 2022) | density | measured (points, 95 % CI) | verdict |\n|---|---|---|---|\n",
    );
    for c in claim_rows(recs, densities, head) {
        writeln!(md, "| {}{} | {} | {} | {} |", c.claim, c.against, c.density, c.measured, c.verdict)?;
    }
    md += "\n";
    Ok(md)
}

/// What each train → prune method's net has seen before the common final training, from the spec:
/// the claim about them is judged at these budgets. Empty where neither is recorded.
pub(super) fn budgets(spec: &crate::spec::Spec, recs: &[Rec]) -> String {
    let has = |m: &str| recs.iter().any(|r| r.m.method.name() == m);
    let t = &spec.train;
    let mut parts = Vec::new();
    if let (true, Some(i)) = (has("imp-at"), &spec.imp) {
        parts.push(format!(
            "IMP-AT finds its mask with {} rounds of {} epochs of adversarial training ({} epochs) and rewinds to the \
initialisation, so its final net has the common training only",
            i.rounds,
            i.epochs,
            i.rounds * i.epochs
        ));
    }
    if let (true, Some(h)) = (has("hydra"), &spec.hydra) {
        parts.push(format!(
            "HYDRA starts from the dense net adversarially trained for {} epochs, optimises its scores for {} more, and its \
final training fine-tunes those trained weights: its weights see {} epochs of adversarial training against {} for every \
other ticket and the dense net",
            h.pretrain_epochs,
            h.epochs,
            h.pretrain_epochs + t.epochs,
            t.epochs
        ));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "**Training budgets.** Every ticket's final training is the same {} epochs of PGD-{} adversarial training from its own \
starting weights; what comes before differs. {}. The train → prune → fine-tune claim below is judged at these budgets, \
which favour HYDRA.\n\n",
        t.epochs,
        t.steps,
        parts.join("; ")
    )
}

/// The claims again, one row each with a column per density: the verdicts at a glance.
pub(super) fn glance(recs: &[Rec], densities: &[f64], head: Measure) -> Result<String> {
    let rows = claim_rows(recs, densities, head);
    if rows.is_empty() {
        return Ok(String::new());
    }
    let mut md = String::from("| the paper's claim |");
    for d in densities {
        write!(md, " density {d} |")?;
    }
    md += "\n|---|";
    md += &"---|".repeat(densities.len());
    md += "\n";
    let mut seen: Vec<&str> = Vec::new();
    for c in &rows {
        if seen.contains(&c.claim.as_str()) {
            continue;
        }
        seen.push(&c.claim);
        write!(md, "| {} |", c.claim)?;
        for &d in densities {
            match rows.iter().find(|r| r.claim == c.claim && r.density == d) {
                Some(r) => write!(md, " {} → {} |", r.measured, r.verdict)?,
                None => md += " — |",
            }
        }
        md += "\n";
    }
    Ok(md)
}

/// "AWT matches the dense net" at each density where AWT is recorded: the density, the paired
/// difference with its interval, and the verdict.
pub(super) fn versus_dense(recs: &[Rec], densities: &[f64], head: Measure) -> Vec<(f64, String, &'static str)> {
    claim_rows(recs, densities, head)
        .into_iter()
        .filter(|c| c.claim.starts_with("an AWT ticket matches the dense net"))
        .map(|c| (c.density, c.measured, c.verdict))
        .collect()
}

/// Every claim at every density where AWT is recorded.
fn claim_rows(recs: &[Rec], densities: &[f64], head: Measure) -> Vec<Claim> {
    let mut rows = Vec::new();
    let mut push = |claim: &str, against: String, density: f64, measured: String, verdict: &'static str| {
        rows.push(Claim { claim: claim.into(), against, density, measured, verdict })
    };
    for &d in densities {
        let awt = by_seed(recs, "awt", d, |r| r.measure(head));
        if awt.is_empty() {
            continue;
        }
        let dense = paired(&awt, &by_seed(recs, "dense", d, |r| r.measure(head)));
        push(
            "an AWT ticket matches the dense net's robust accuracy (within 1 point)",
            String::new(),
            d,
            format!("AWT − dense {}", dense.pct_ci()),
            matches(&dense),
        );
        let best = crate::spec::masks_at_init()
            .iter()
            .chain(&["ntt"])
            .map(|m| (*m, summary(&values(&by_seed(recs, m, d, |r| r.measure(head))))))
            .filter(|(_, s)| s.n > 0)
            .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
        if let Some((m, _)) = best {
            let s = paired(&awt, &by_seed(recs, m, d, |r| r.measure(head)));
            push(
                "AWT beats pruning at initialisation and NTT",
                format!(" (against the best of them here, {m})"),
                d,
                format!("AWT − {m} {}", s.pct_ci()),
                beats(&s),
            );
        }
        for m in ["imp-at", "hydra"] {
            let s = paired(&awt, &by_seed(recs, m, d, |r| r.measure(head)));
            if s.n > 0 {
                push(
                    &format!("train → prune → fine-tune ({m}) falls behind AWT at high sparsity"),
                    String::new(),
                    d,
                    format!("AWT − {m} {}", s.pct_ci()),
                    beats(&s),
                );
            }
        }
        // The dynamics claim on §3's measures, each averaged over the trained epochs; the sign is
        // chosen so that "above" favours AWT.
        type Get = fn(&DynLine) -> Option<f64>;
        let measures: [(&str, &str, bool, Get); 3] = [
            ("mean kernel distance to the dense net, same epoch", "random − AWT", true, |e| Some(e.rel_distance)),
            ("mean kernel alignment with the dense net, same epoch", "AWT − random", false, |e| Some(e.alignment)),
            ("mean absolute training-loss gap to the dense net", "random − AWT", true, |e| e.loss_gap.map(f64::abs)),
        ];
        for (what, label, lower_is_better, get) in measures {
            let per = |m: &str| by_seed(recs, m, d, |r| r.mean_dynamics(get));
            let s =
                if lower_is_better { paired(&per("random"), &per("awt")) } else { paired(&per("awt"), &per("random")) };
            if s.n > 0 {
                push(
                    &format!(
                        "AWT preserves the dense net's adversarial NTK dynamics better than a random ticket ({what})"
                    ),
                    String::new(),
                    d,
                    format!("{label} {}", s.num_ci()),
                    beats(&s),
                );
            }
        }
    }
    rows
}
