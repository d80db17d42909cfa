//! §5 of the study: every warning the evaluations' sanity checks left in the records, so that none
//! stays hidden in a JSON file.

use std::fmt::Write as _;

use super::data::Rec;

/// The warnings of `recs` (per preset, in order), one table row each, with what they mean.
pub(super) fn section(presets: &[(&str, &[Rec])]) -> String {
    let mut rows = String::new();
    let (mut with, mut all, mut clean_only) = (0, 0, 0);
    for (preset, recs) in presets {
        for r in *recs {
            all += 1;
            if r.m.warnings.is_empty() {
                continue;
            }
            with += 1;
            if r.m.eval.cumulative.is_empty() {
                clean_only += 1;
            }
            for w in &r.m.warnings {
                let _ = writeln!(rows, "| {preset} | {} | {} | {w} |", r.m.name, r.m.attack.attack);
            }
        }
    }
    let mut md = String::from("## 5. Evaluation warnings\n\n");
    if with == 0 {
        let _ = writeln!(md, "None of the {all} records carries a warning of the evaluation's sanity checks.\n");
        return md;
    }
    let _ = writeln!(
        md,
        "The evaluation's sanity checks (an ε = 0 attack, zero input gradients, uniform noise in the ε-ball, \
Square after the gradient attacks) left warnings in {with} of {all} records; every one is listed here.\n"
    );
    if clean_only > 0 {
        let _ = writeln!(
            md,
            "{clean_only} of them come from evaluations that ran no attack (attack `none`: the NTT validation measures \
clean accuracy only). There the uniform-noise check had no attack to test, so its warning says nothing about \
gradient masking — a defect of the binary that made them, fixed since (an evaluation without attack now runs no \
noise check); their clean accuracies are unaffected.\n"
        );
    }
    md += "Where noise broke points in an adversarial evaluation, the binary that made these records still \
counted those points robust (fixed since: they are now subtracted): such a run's robust accuracy is overstated by \
at most that many points of its 10,000. Zero input gradients mark points no gradient attack can move; the \
worst case still includes APGD-DLR, and the run's numbers are reported as measured.\n\n";
    md += "| preset | run | attack | warning |\n|---|---|---|---|\n";
    md += &rows;
    md += "\n";
    md
}
