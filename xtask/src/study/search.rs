//! What the grid's ticket searches did, from their thinned logs: the kernel and output distances to
//! the dense teacher from first to lowest to last step, and how often the mask moved — so a reader
//! can tell a search that matched its teacher from one that did not.

use std::fmt::Write as _;

use anyhow::Result;

use super::data::{Rec, SearchLine, variants};

/// "first → last" of the mask re-selections that changed the mask, or that none is recorded.
pub(super) fn mask_moves(r: &Rec) -> (usize, String) {
    let ch: Vec<&SearchLine> = r.search.iter().filter(|s| s.mask_changes > 0).collect();
    let moved = match (ch.first(), ch.last()) {
        (Some(a), Some(b)) => format!("{} → {}", a.mask_changes, b.mask_changes),
        _ => "none recorded".into(),
    };
    (ch.len(), moved)
}

/// The table of the grid's searches and what it says about them (empty when none is recorded).
pub(super) fn searches(recs: &[Rec]) -> Result<String> {
    let mut md = String::new();
    let order = variants(recs);
    let mut runs: Vec<&Rec> = recs.iter().filter(|r| !r.search.is_empty()).collect();
    runs.sort_by_key(|r| (order.iter().position(|v| *v == r.variant()), (-r.m.density.get() * 1e6) as i64, r.m.seed));
    if runs.is_empty() {
        return Ok(md);
    }
    md += "### What the searches did\n\nOn the search's own training batches (the kernel is the empirical NTK between each batch's two halves; \
distances are relative to the teacher's, so 1 is as far as an all-zero kernel or all-zero logits):\n\n\
| search | density | seed | kernel distance, first → lowest (step) → last | output distance, first → last | kernel term / output term at the first step | mask re-selections that changed it |\n|---|---|---|---|---|---|---|\n";
    let mut far = Vec::new();
    for r in &runs {
        let (f, l) = (&r.search[0], &r.search[r.search.len() - 1]);
        let low = r.search.iter().min_by(|a, b| a.kernel_distance.total_cmp(&b.kernel_distance)).unwrap_or(f);
        let ratio = if f.output_term > 0.0 { format!("{:.0}", f.kernel_term / f.output_term) } else { "—".into() };
        if l.output_distance > 1.0 {
            far.push(format!("{} d{} s{}", r.variant(), r.m.density.get(), r.m.seed));
        }
        writeln!(
            md,
            "| {} | {} | {} | {:.3} → {:.3} ({}) → {:.3} | {:.3} → {:.3} | {ratio} | {} |",
            r.variant(),
            r.m.density.get(),
            r.m.seed,
            f.kernel_distance,
            low.kernel_distance,
            low.step,
            l.kernel_distance,
            f.output_distance,
            l.output_distance,
            mask_moves(r).0
        )?;
    }
    md += "\n";
    if !far.is_empty() {
        writeln!(
            md,
            "**Searches that left the teacher's outputs.** In {} of {} searches ({}) the last step's output distance is above 1: \
the student's logits ended further from the teacher's than all-zero logits would be. Where the kernel term outweighs the output term \
by orders of magnitude at the start (the column above), the search matches kernels at the outputs' expense.\n",
            far.len(),
            runs.len(),
            far.join(", ")
        )?;
    }
    Ok(md)
}
