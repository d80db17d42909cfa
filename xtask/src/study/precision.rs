//! What a cell's seeds can resolve: for each primary accuracy claim of study v2, the spread of its
//! paired differences over seeds, the half-width of its 95 % interval now, and how many paired
//! seeds would, at that spread, narrow it to ±1 point (while it is wider, no equivalence within the
//! protocol's ±1-point margin can be shown, whatever the difference) and to ±0.5 point. Added after the comparison,
//! for planning a study that could decide what this one left open; it decides nothing.

use std::fmt::Write as _;

use crate::stats::{summary, t95};

/// The most seeds [`seeds_for`] looks at; beyond it "> 1000".
const MOST: usize = 1000;

/// The fewest paired seeds `n ≥ 2` at which a 95 % t-interval over differences of sample sd `sd`
/// (in points) has a half-width of at most `half` points; `None` beyond [`MOST`].
pub(super) fn seeds_for(sd: f64, half: f64) -> Option<usize> {
    (2..=MOST).find(|&n| t95(n - 1) * sd / (n as f64).sqrt() <= half)
}

/// The cell's table from its accuracy claims, each named with its paired differences (fractions),
/// or nothing where none has two paired seeds; with `explain`, led by what its columns mean (the
/// first cell), else by a reference to it.
pub(super) fn table(claims: &[(&str, &[f64])], explain: bool) -> String {
    let rows: Vec<&(&str, &[f64])> = claims.iter().filter(|c| c.1.len() >= 2).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut md = if explain {
        String::from(
            "What these seeds can resolve (added after the comparison, not in the protocol: for planning, no verdict): \
the spread (sd) of each accuracy claim's paired differences over seeds, the half-width of its 95 % interval now, and \
the paired seeds at which, at that spread, the interval would narrow to ±1 point (while it is wider, no equivalence \
within the protocol's ±1-point margin can be shown, whatever the difference) and to ±0.5 point. Unadjusted: under \
Holm's correction a claim needs more. Over few seeds the sd is itself uncertain: its 95 % interval runs from 0.6 to 2.9 \
times the estimate over five seeds, from 0.5 to 6.3 times over three.\n\n",
        )
    } else {
        String::from("What these seeds can resolve (as for the first cell above; for planning, no verdict):\n\n")
    };
    md += "| claim | paired seeds | sd of the differences | 95 % half-width now | seeds for ±1 point | seeds for ±0.5 \
point |\n|---|---|---|---|---|---|\n";
    let seeds = |sd: f64, half: f64| seeds_for(sd, half).map_or(format!("> {MOST}"), |n| n.to_string());
    for (what, diffs) in rows {
        let s = summary(diffs);
        let sd = 100.0 * s.sd;
        let half = t95(s.n - 1) * sd / (s.n as f64).sqrt();
        let _ = writeln!(md, "| {what} | {} | {sd:.2} | ±{half:.2} | {} | {} |", s.n, seeds(sd, 1.0), seeds(sd, 0.5));
    }
    md + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed counts are the first at which t₀.₉₇₅(n − 1)·sd/√n reaches the half-width, checked by
    /// hand: sd 1 point reaches ±1 at n = 7 (2.447/√7 = 0.925; at 6, 2.571/√6 = 1.050) and ±0.5 at
    /// n = 18 (2.110/√18 = 0.497; at 17, 2.120/√17 = 0.514); sd 0 at two seeds; a spread no count
    /// up to the cap narrows is `None`.
    #[test]
    fn the_seed_counts_are_where_the_interval_first_narrows_enough() {
        assert_eq!(seeds_for(1.0, 1.0), Some(7));
        assert_eq!(seeds_for(1.0, 0.5), Some(18));
        assert_eq!(seeds_for(0.0, 0.5), Some(2));
        assert_eq!(seeds_for(100.0, 0.1), None);
    }

    /// One row per claim with two seeds or more, its sd and half-width in points; nothing at all
    /// without such a claim.
    #[test]
    fn one_row_per_claim_with_two_seeds_in_points() {
        let (d, one) = ([-0.02, 0.0, -0.01], [0.01]);
        let claims: [(&str, &[f64]); 2] = [("AWT vs NTT", &d), ("AWT vs snip", &one)];
        let md = table(&claims, true);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| AWT")).collect();
        // sd of (−2, 0, −1) points is 1; half-width 4.303/√3 = 2.48.
        assert_eq!(rows, ["| AWT vs NTT | 3 | 1.00 | ±2.48 | 7 | 18 |"]);
        assert_eq!(table(&claims[1..], true), "");
        assert!(table(&claims, false).starts_with("What these seeds can resolve (as for the first cell"));
    }
}
