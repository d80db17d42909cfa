//! What keeps a ticket's accuracy from measuring its mask: a class cut off (a class whose logit
//! keeps no incoming weight, from each run's `mask.json`), which caps the accuracy whatever training
//! does, and training that stalled (from `train-metrics.jsonl`).

use std::fmt::Write as _;

use super::data::{Rec, runs_of};
use crate::census::Census;

/// The classes a run's ticket leaves without any kept incoming weight (none recorded: empty).
pub(super) fn cut_classes(recs: &[Rec], variant: &str, density: f64, seed: u64) -> Vec<u64> {
    runs_of(recs, variant, density)
        .find(|r| r.m.seed == seed)
        .and_then(|r| r.mask.as_ref()?.classes_without_input.clone())
        .unwrap_or_default()
}

/// Tickets whose last layer cuts a class off can never predict it: their clean accuracy is capped
/// near (classes − cut) / classes of the dense net's. Says how often that happened and what it cost.
pub(super) fn cut_off_finding(recs: &[Rec], d: f64) -> String {
    let with_mask: Vec<&Rec> = recs.iter().filter(|r| r.mask.is_some() && r.m.density.get() < 1.0).collect();
    let cut: Vec<&&Rec> =
        with_mask.iter().filter(|r| !cut_classes(recs, &r.variant(), d, r.m.seed).is_empty()).collect();
    if with_mask.is_empty() {
        // Still end the table above.
        return "\n".into();
    }
    if cut.is_empty() {
        return format!(
            "\nNo ticket of the {} with a recorded mask leaves a class without an incoming weight.\n\n",
            with_mask.len()
        );
    }
    let names: Vec<String> = cut.iter().map(|r| format!("{} s{}", r.variant(), r.m.seed)).collect();
    let mean = |v: &[&&Rec]| v.iter().map(|r| r.m.clean()).sum::<f64>() / v.len() as f64;
    let uncut: Vec<&&Rec> = with_mask
        .iter()
        .filter(|r| r.variant() != "ntt" && cut_classes(recs, &r.variant(), d, r.m.seed).is_empty())
        .collect();
    let mut s = format!(
        "\n**Cut-off classes.** At density {d} per layer the last layer keeps {:.0} % of its weights, and {} of {} tickets ({}) leave at least one class with no kept incoming weight: that class's logit is its bias alone, a constant the input cannot raise, so the class can only be predicted by elimination (when every other logit falls below that constant). Whether training finds that varies from ticket to ticket, so a cut-off class costs less than the 10 points a class never predicted would on a balanced ten-class test set, and how much less is not fixed; what the records show: the cut-off tickets' mean clean accuracy is {:.1} %",
        100.0 * d,
        cut.len(),
        with_mask.len(),
        names.join(", "),
        100.0 * mean(&cut)
    );
    if !uncut.is_empty() {
        s += &format!(
            " against {:.1} % for the other non-NTT tickets, which keep every class ({:+.1} points)",
            100.0 * mean(&uncut),
            100.0 * (mean(&cut) - mean(&uncut))
        );
    }
    let ntt: Vec<&&Rec> = with_mask.iter().filter(|r| r.variant() == "ntt").collect();
    let ntt_cut = ntt.iter().filter(|r| !cut_classes(recs, "ntt", d, r.m.seed).is_empty()).count();
    if !ntt.is_empty() {
        s += &format!(
            ". NTT's tickets, searched to match the dense net's outputs, cut a class off in {ntt_cut} of {}",
            ntt.len()
        );
    }
    s += ". Paired differences against random or magnitude include this effect: it is part of what a layer-wise \
random or magnitude mask does at this density, not a flaw of the runs.\n\n";
    s
}

/// A run's training stalled when its last epoch's training loss is still at least 90 % of chance
/// (ln 10 for ten classes); None where the training curve is not recorded.
pub(super) fn stalled(r: &Rec) -> Option<bool> {
    r.train.last().map(|l| l.train_loss >= 0.9 * 10f64.ln())
}

/// Names the runs at density `d` whose training stalled (empty when none did), and what the same
/// mask with its units rescaled to their dense norm (the `<method>-rescaled` ablation of the same
/// seed) did where it is recorded.
pub(super) fn stalled_finding(recs: &[Rec], d: f64) -> String {
    let at_d = |r: &&Rec| (r.m.density.get() - d).abs() < 1e-12;
    let loss = |r: &Rec| r.train.last().map_or(f64::NAN, |l| l.train_loss);
    let stuck: Vec<&Rec> = recs.iter().filter(at_d).filter(|r| stalled(r) == Some(true)).collect();
    if stuck.is_empty() {
        return String::new();
    }
    let names: Vec<String> =
        stuck.iter().map(|r| format!("{} s{} (final training loss {:.2})", r.variant(), r.m.seed, loss(r))).collect();
    let twins: Vec<String> = stuck
        .iter()
        .filter_map(|r| {
            let v = format!("{}-rescaled", r.variant());
            let t = recs.iter().filter(at_d).find(|t| t.variant() == v && t.m.seed == r.m.seed)?;
            let verb = if stalled(t) == Some(true) { "stalled as well" } else { "trained" };
            Some(format!(
                "{v} s{} {verb} (final training loss {:.2}; robust accuracy {:.1} % against {:.1} %)",
                t.m.seed,
                loss(t),
                100.0 * t.m.robust(),
                100.0 * r.m.robust()
            ))
        })
        .collect();
    let test = if twins.is_empty() {
        "the `-rescaled` ablations (the same masks, each unit's kept weights scaled back to its dense norm) test that."
            .to_string()
    } else {
        format!(
            "the `-rescaled` ablations test that (the same masks, each unit's kept weights scaled back to its dense norm): {}.",
            twins.join("; ")
        )
    };
    // The weights' scale explains only a mask kept at its initial weights, not a searched ticket.
    let cause = if stuck.iter().any(|r| r.m.method.recipe() == awt_runs::TicketRecipe::MaskAtInit) {
        format!(
            " For a mask at initialisation a likely cause: it keeps its initial weights' scale, so at low density little signal \
reaches the output; {test}"
        )
    } else {
        String::new()
    };
    format!(
        "\n**Stalled training.** {} ended {} training with a loss of at least 90 % of chance (ln 10 ≈ 2.30): under this recipe \
{} did not learn, so {} accuracy measures a failed training more than a mask.{cause}\n",
        names.join(", "),
        if names.len() == 1 { "its" } else { "their" },
        if names.len() == 1 { "it" } else { "they" },
        if names.len() == 1 { "its" } else { "their" },
    )
}

/// Study v2's census (docs/protocol.md §3): of the unconstrained masks at initialisation (output
/// layer pruned like the others) made for every evaluation seed, how many would cut a class off,
/// per method and density, with the classes.
pub(super) fn census_section(c: &Census) -> String {
    let mut densities: Vec<f64> = c.masks.iter().map(|m| m.density).collect();
    densities.sort_by(|a, b| b.total_cmp(a));
    densities.dedup();
    let mut variants: Vec<&str> = Vec::new();
    for m in &c.masks {
        if !variants.contains(&m.variant.as_str()) {
            variants.push(&m.variant);
        }
    }
    let order = |v: &str| crate::spec::METHODS.iter().position(|m| *m == v).unwrap_or(usize::MAX);
    variants.sort_by_key(|v| (order(crate::spec::plain_of(v).unwrap_or(v)), v.to_string()));
    let mut md = format!(
        "## Study v2: how often an unconstrained mask would cut a class off (`{}`)

The study's runs keep the output layer \
dense (docs/protocol.md §3), so none of their tickets can leave a class without an incoming weight. Made with the output \
layer pruned like the others, the masks at initialisation of `{}` (same methods, allocations, densities and evaluation \
seeds; a mask only, no training; `cargo xtask census`, build `{}`) would cut these classes off:\n\n| mask |",
        c.preset,
        c.preset,
        c.git_commit.chars().take(10).collect::<String>()
    );
    for d in &densities {
        let _ = write!(md, " density {d} |");
    }
    md += "\n|---|";
    md += &"---|".repeat(densities.len());
    md += "\n";
    let (mut cut_all, mut all) = (0, 0);
    for v in variants {
        let _ = write!(md, "| {v} |");
        for &d in &densities {
            let ms: Vec<_> = c.masks.iter().filter(|m| m.variant == v && m.density == d).collect();
            let cut: Vec<String> = ms
                .iter()
                .filter(|m| !m.classes_cut.is_empty())
                .map(|m| format!("s{} {:?}", m.seed, m.classes_cut))
                .collect();
            (cut_all, all) = (cut_all + cut.len(), all + ms.len());
            let _ = match (ms.len(), cut.is_empty()) {
                (0, _) => write!(md, " — |"),
                (n, true) => write!(md, " 0 of {n} |"),
                (n, false) => write!(md, " {} of {n}: {} |", cut.len(), cut.join(", ")),
            };
        }
        md += "\n";
    }
    let _ = writeln!(md, "\n{cut_all} of the {all} masks would cut at least one class off.\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::CensusMask;

    /// The census table: per mask and density how many of the seeds' masks cut a class, which
    /// seed and classes, a variant beside its method, and the total.
    #[test]
    fn the_census_says_which_masks_cut_which_classes() {
        let m = |variant: &str, density: f64, seed: u64, classes_cut: Vec<u64>| CensusMask {
            variant: variant.into(),
            density,
            seed,
            classes_cut,
        };
        let c = Census {
            preset: "final-mlp".into(),
            arch: "lenet-300-100".into(),
            output_layer: "pruned".into(),
            git_commit: "0123456789abcdef".into(),
            masks: vec![
                m("snip-layerwise", 0.02, 200, vec![8, 9]),
                m("random", 0.05, 200, vec![]),
                m("random", 0.02, 200, vec![3]),
                m("random", 0.02, 201, vec![]),
                m("snip", 0.02, 200, vec![]),
            ],
        };
        let md = census_section(&c);
        assert!(md.contains("build `0123456789`"), "{md}");
        assert!(md.contains("| mask | density 0.05 | density 0.02 |"), "{md}");
        assert!(md.contains("| random | 0 of 1 | 1 of 2: s200 [3] |"), "{md}");
        assert!(md.contains("| snip | — | 0 of 1 |\n| snip-layerwise | — | 1 of 1: s200 [8, 9] |"), "{md}");
        assert!(md.contains("2 of the 5 masks would cut at least one class off."), "{md}");
    }
}
