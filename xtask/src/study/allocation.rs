//! How each ticket of a final cell spreads its density over the layers (each run's `mask.json`),
//! beside its robust accuracy. The exploratory rows found that this allocation, more than which
//! weights a score keeps within a layer, went with robust accuracy; the table shows every ticket's
//! allocation so that a reader sees it rather than takes it on trust, and [`colour`] lets the
//! figure of each ticket against the dense net tell the allocations apart.

use std::fmt::Write as _;

use super::data::{Measure, Rec, by_seed, runs_of, values, variants};
use super::exploratory::level;
use crate::stats::summary;

/// The legend of [`colour`]'s groups: AWT (and its variants) or the others, each at one density in
/// every layer it prunes or not.
pub(super) const GROUPS: [&str; 4] = ["AWT, uniform", "AWT, non-uniform", "others, uniform", "others, non-uniform"];

/// What the figure's text says of [`GROUPS`].
pub(super) const GROUPS_NOTE: &str = "Colours tell the allocations apart: *uniform*, each pruned layer keeps the same \
share of its weights (within 10 %); *non-uniform*, the layers keep different shares (a global ranking, Erdős–Rényi-kernel \
densities, or another mask's counts); each label gives the share its largest pruned layer keeps.";

/// A weight layer that some ticket of the cell prunes, and its size.
struct Layer {
    name: String,
    weights: u64,
}

/// The layers some ticket at density `d` prunes, in the masks' order.
fn pruned_layers(recs: &[Rec], d: f64) -> Vec<Layer> {
    let masks = || runs_of_all(recs, d).filter_map(|r| r.mask.as_ref()).filter(|m| !m.layers.is_empty());
    let Some(first) = masks().next() else { return Vec::new() };
    first
        .layers
        .iter()
        .filter(|l| masks().any(|m| m.layers.iter().any(|o| o.name == l.name && o.density < 1.0)))
        .map(|l| Layer { name: l.name.clone(), weights: l.shape.iter().product() })
        .collect()
}

/// Every sparse run at density `d`.
fn runs_of_all(recs: &[Rec], d: f64) -> impl Iterator<Item = &Rec> {
    recs.iter().filter(move |r| r.variant() != "dense" && (r.m.density.get() - d).abs() < 1e-12)
}

/// The share (in %) that layer `name` keeps in each of `v`'s masks at density `d`.
fn shares(recs: &[Rec], v: &str, d: f64, name: &str) -> Vec<f64> {
    runs_of(recs, v, d)
        .filter_map(|r| r.mask.as_ref()?.layers.iter().find(|l| l.name == name).map(|l| 100.0 * l.density))
        .collect()
}

/// The mean share, and the range over seeds where they differ (at the table's two decimals).
fn share_text(s: &[f64]) -> String {
    let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = summary(s).mean;
    if format!("{lo:.2}") == format!("{hi:.2}") { format!("{m:.2}") } else { format!("{m:.2} ({lo:.2}–{hi:.2})") }
}

/// Whether `v`'s masks at density `d` keep the same share in every pruned layer (within 10 %), and the
/// largest pruned layer's name and mean share (%); None where no mask of `v` is recorded.
pub(super) fn profile(recs: &[Rec], v: &str, d: f64) -> Option<(bool, String, f64)> {
    let layers = pruned_layers(recs, d);
    let means: Vec<(&Layer, f64)> = layers
        .iter()
        .map(|l| (l, shares(recs, v, d, &l.name)))
        .filter(|(_, s)| !s.is_empty())
        .map(|(l, s)| (l, summary(&s).mean))
        .collect();
    let (big, share) = means.iter().max_by_key(|(l, _)| l.weights)?;
    let lo = means.iter().map(|m| m.1).fold(f64::INFINITY, f64::min);
    let hi = means.iter().map(|m| m.1).fold(f64::NEG_INFINITY, f64::max);
    Some((hi <= 1.1 * lo, big.name.trim_end_matches(".weight").to_string(), *share))
}

/// The figure's group of `v` (an index into [`GROUPS`]) and what its label adds: the share its
/// largest pruned layer keeps.
pub(super) fn colour(recs: &[Rec], v: &str, d: f64) -> (usize, String) {
    let (awt, _) = super::figures::awt_or_baseline(v, d);
    match profile(recs, v, d) {
        Some((uniform, layer, share)) => (2 * awt + usize::from(!uniform), format!(", {layer} {share:.1} %")),
        None => (2 * awt, String::new()),
    }
}

/// The table: each ticket's kept share per pruned layer beside its worst-case robust accuracy, the
/// highest first; empty where no mask of the cell is recorded.
pub(super) fn table(recs: &[Rec], d: f64) -> String {
    let layers = pruned_layers(recs, d);
    if layers.is_empty() {
        return String::new();
    }
    let mut rows: Vec<(f64, String)> = Vec::new();
    for v in variants(recs).iter().filter(|v| *v != "dense") {
        let per: Vec<Vec<f64>> = layers.iter().map(|l| shares(recs, v, d, &l.name)).collect();
        let n = per.iter().map(Vec::len).max().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let worst = summary(&values(&by_seed(recs, v, d, |r| r.measure(Measure::Worst))));
        let cols: Vec<String> =
            per.iter().map(|s| if s.is_empty() { "–".to_string() } else { share_text(s) }).collect();
        rows.push((worst.mean, format!("| {v} | {n} | {} | {} |", cols.join(" | "), level(&worst))));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let head: Vec<String> =
        layers.iter().map(|l| format!("{} ({} weights)", l.name.trim_end_matches(".weight"), l.weights)).collect();
    let mut md = String::from(
        "How each ticket spreads its density over the layers (exploratory, from each run's mask): the share of each \
pruned layer's weights it keeps, in %, the mean over seeds and, where the seeds differ, their range; layers no ticket \
prunes (the output layer) are left out. Beside it the worst case (robust accuracy, mean [95 % interval] over seeds, \
%), the highest first.\n\n",
    );
    let _ = writeln!(md, "| variant | masks | {} | worst case |", head.join(" | "));
    let _ = writeln!(md, "|---|---|{}---|", "---|".repeat(layers.len()));
    for (_, r) in rows {
        let _ = writeln!(md, "{r}");
    }
    md + "\n"
}

#[cfg(test)]
mod tests {
    use super::super::data::{MaskLayer, MaskRecord};
    use super::super::tests::rec;
    use super::*;

    fn masked(v: &str, seed: u64, worst: f64, fc1: f64, fc2: f64) -> Rec {
        let mut r = rec(v, 0.05, seed, (0.8, worst, worst), 100, Vec::new());
        let layer =
            |name: &str, shape: [u64; 2], density| MaskLayer { name: name.into(), shape: shape.to_vec(), density };
        let layers = vec![
            layer("fc1.weight", [300, 784], fc1),
            layer("fc2.weight", [100, 300], fc2),
            layer("fc3.weight", [10, 100], 1.0),
        ];
        r.mask = Some(MaskRecord { layers, ..Default::default() });
        r
    }

    /// Each ticket's shares per pruned layer (their range where seeds differ), the output layer left
    /// out, the highest worst case first; the figure's groups follow the allocation.
    #[test]
    fn every_tickets_layer_shares_are_tabled_and_coloured_by_allocation() {
        let recs = vec![
            masked("awt", 0, 0.66, 0.0464, 0.0464),
            masked("awt", 1, 0.67, 0.0464, 0.0464),
            masked("ntk-sap-global", 0, 0.69, 0.0347, 0.1384),
            masked("ntk-sap-global", 1, 0.68, 0.0351, 0.1322),
            rec("dense", 1.0, 0, (0.8, 0.67, 0.67), 100, Vec::new()),
        ];
        let t = table(&recs, 0.05);
        assert!(t.contains("| variant | masks | fc1 (235200 weights) | fc2 (30000 weights) | worst case |"), "{t}");
        assert!(!t.contains("fc3"), "the output layer, kept whole, is left out:\n{t}");
        let (n, a) = (
            t.find("| ntk-sap-global | 2 | 3.49 (3.47–3.51) | 13.53 (13.22–13.84) |"),
            t.find("| awt | 2 | 4.64 | 4.64 |"),
        );
        assert!(n.is_some() && a.is_some() && n < a, "rows, highest worst case first:\n{t}");
        assert!(!t.contains("| dense"), "{t}");
        assert_eq!(colour(&recs, "awt", 0.05), (0, ", fc1 4.6 %".to_string()));
        assert_eq!(colour(&recs, "ntk-sap-global", 0.05), (3, ", fc1 3.5 %".to_string()));
        assert_eq!(colour(&recs, "random", 0.05), (2, String::new()), "no mask recorded");
        assert!(table(&recs, 0.02).is_empty(), "no ticket at that density");
    }
}
