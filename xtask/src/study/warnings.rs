//! §5 of the study: every warning the evaluations' sanity checks left in the records — the worst-case
//! evaluation's (kept in the manifest) and AutoAttack's (`eval-aa.json`) — of every preset the report
//! reads. The report gets a summary per preset and what each kind of warning means for the numbers;
//! the appendix lists every warning, so that none stays hidden in a JSON file.

use std::fmt::Write as _;

use super::data::Rec;

/// What a warning says, read from the message the evaluation wrote (`awt_attack::Warnings::messages`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Uniform noise in the ε-ball broke this many points every attack had missed.
    Noise(u64),
    /// The gradient-free Square attack broke `broke` of `of` points every gradient attack had missed
    /// (a message with `broke` = 0 comes from binaries that printed it for any masking suspicion).
    Square { broke: u64, of: u64 },
    /// This many correctly classified points have an all-zero input gradient.
    ZeroGradient(u64),
    /// An ε = 0 attack changed predictions: the pipeline itself is broken.
    Eps0,
    /// Anything else, listed as written.
    Other,
}

fn kind(w: &str) -> Kind {
    let nums: Vec<u64> = w.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok()).collect();
    let n = |i: usize| nums.get(i).copied();
    match () {
        _ if w.starts_with("uniform noise in the ε-ball broke") => n(0).map_or(Kind::Other, Kind::Noise),
        _ if w.starts_with("GRADIENT MASKING: the gradient-free Square attack broke") => match (n(0), n(1)) {
            (Some(broke), Some(of)) => Kind::Square { broke, of },
            _ => Kind::Other,
        },
        _ if w.contains("all-zero input gradient") => n(0).map_or(Kind::Other, Kind::ZeroGradient),
        _ if w.contains("under an ε = 0 attack") => Kind::Eps0,
        _ => Kind::Other,
    }
}

/// One evaluation of one run and what it left.
struct Evaluation<'a> {
    preset: &'a str,
    run: &'a str,
    /// `worst`, `none`, `autoattack`, …
    attack: &'a str,
    /// Ran no attack (clean accuracy only).
    clean_only: bool,
    /// Points noise broke were subtracted from the robust count (`noise_broken` recorded).
    noise_subtracted: bool,
    warnings: &'a [String],
}

fn evaluations<'a>(preset: &'a str, recs: &'a [Rec]) -> Vec<Evaluation<'a>> {
    let mut out = Vec::new();
    for r in recs {
        out.push(Evaluation {
            preset,
            run: &r.m.name,
            attack: &r.m.attack.attack,
            clean_only: r.m.eval.cumulative.is_empty(),
            noise_subtracted: r.m.eval.noise_broken.is_some(),
            warnings: &r.m.warnings,
        });
        if let Some(aa) = &r.aa {
            out.push(Evaluation {
                preset,
                run: &r.m.name,
                attack: &aa.settings.attack,
                clean_only: aa.cumulative.is_empty(),
                noise_subtracted: aa.noise_broken.is_some(),
                warnings: &aa.warnings,
            });
        }
    }
    out
}

/// Per preset: the counts of the summary table.
#[derive(Default)]
struct Tally {
    evaluations: usize,
    with: usize,
    noise_runs: usize,
    noise_points: u64,
    noise_most: u64,
    square_runs: usize,
    zero_runs: usize,
    other_runs: usize,
}

/// What Square alone broke in the AutoAttack evaluations (AutoAttack runs Square after APGD-CE,
/// APGD-T and FAB-T): by density over every preset, and the (preset, variant, density) groups where it broke
/// more than 1 % in some run.
fn square_only(presets: &[(&str, &[Rec])]) -> String {
    use std::collections::BTreeMap;
    // density (descending, as text) → (evaluations, Σ %, max %, count > 1 %)
    let mut by_density: BTreeMap<String, (usize, f64, f64, usize)> = BTreeMap::new();
    let mut groups: Vec<(String, usize, Vec<f64>)> = Vec::new();
    for (preset, recs) in presets {
        for r in *recs {
            let Some(aa) = &r.aa else { continue };
            let (Some(k), true) = (aa.gradient_free_only, aa.n > 0) else { continue };
            let pct = 100.0 * k as f64 / aa.n as f64;
            let d = r.m.density.get();
            let e = by_density.entry(format!("{:08.5}", 1.0 - d)).or_default();
            *e = (e.0 + 1, e.1 + pct, e.2.max(pct), e.3 + usize::from(pct > 1.0));
            let name = format!("{preset}: {} {d}", r.variant());
            match groups.iter_mut().find(|g| g.0 == name) {
                Some(g) => {
                    g.1 += 1;
                    g.2.push(pct);
                }
                None => groups.push((name, 1, vec![pct])),
            }
        }
    }
    if by_density.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "**Square after the gradient attacks.** AutoAttack runs the gradient-free Square attack after APGD-CE, \
APGD-T and FAB-T, on the points they left; what Square alone broke (% of the images AutoAttack evaluated), by density over \
every preset:\n\n| density | AutoAttack evaluations | mean | most | evaluations over 1 % |\n|---|---|---|---|---|\n",
    );
    for (key, (n, sum, max, over)) in &by_density {
        let d = 1.0 - key.parse::<f64>().unwrap_or(f64::NAN);
        let d = (d * 1e6).round() / 1e6;
        let _ = writeln!(md, "| {d} | {n} | {:.2} % | {max:.1} % | {over} |", sum / *n as f64);
    }
    let over: Vec<String> = groups
        .iter()
        .filter(|g| g.2.iter().any(|&p| p > 1.0))
        .map(|(name, n, pcts)| {
            let k = pcts.iter().filter(|&&p| p > 1.0).count();
            let mut v: Vec<f64> = pcts.iter().copied().filter(|&p| p > 1.0).collect();
            v.sort_by(f64::total_cmp);
            let v: Vec<String> = v.iter().map(|p| format!("{p:.1}")).collect();
            format!("{name} ({k} of {n}: {} %)", v.join(", "))
        })
        .collect();
    if !over.is_empty() {
        let _ = writeln!(md, "\nOver 1 % (seeds of that variant over 1 %, of those evaluated): {}.", over.join("; "));
    }
    md += "\nThose points survived AutoAttack's gradient attacks (APGD-CE, APGD-T, FAB-T) and fell to Square. The \
headline worst case (PGD-20, APGD-CE, APGD-DLR, as docs/protocol.md fixes it) has no gradient-free attack either, so \
for those nets it likely overstates robust accuracy by a similar amount; the AutoAttack columns include Square. Over \
1 % is a sign of gradient masking: it is reported here, and no rule uses it.\n\n";
    md
}

/// "1 evaluation", "2 evaluations".
fn evaluations_n(n: usize) -> String {
    format!("{n} evaluation{}", if n == 1 { "" } else { "s" })
}

/// (§5 for docs/study.md, the full list for the appendix) over `presets` (in order; presets without
/// records are left out).
pub(super) fn section(presets: &[(&str, &[Rec])]) -> (String, String) {
    let mut table = String::new();
    let mut rows = String::new();
    let (mut all, mut with, mut clean_only) = (0, 0, 0);
    let (mut noise_counted, mut noise_counted_points, mut stale_square) = (0, 0, 0);
    for (preset, recs) in presets {
        let evs = evaluations(preset, recs);
        if evs.is_empty() {
            continue;
        }
        let mut t = Tally { evaluations: evs.len(), ..Tally::default() };
        for e in &evs {
            if e.warnings.is_empty() {
                continue;
            }
            t.with += 1;
            clean_only += usize::from(e.clean_only);
            let (mut noise, mut sq, mut zero, mut other) = (false, false, false, false);
            for w in e.warnings.iter() {
                let _ = writeln!(rows, "| {} | {} | {} | {w} |", e.preset, e.run, e.attack);
                match kind(w) {
                    Kind::Noise(k) if !e.clean_only => {
                        noise = true;
                        t.noise_points += k;
                        t.noise_most = t.noise_most.max(k);
                        if !e.noise_subtracted {
                            noise_counted += 1;
                            noise_counted_points = noise_counted_points.max(k);
                        }
                    }
                    Kind::Square { broke: 0, .. } => stale_square += 1,
                    Kind::Square { .. } => sq = true,
                    Kind::ZeroGradient(_) if !e.clean_only => zero = true,
                    Kind::Noise(_) | Kind::ZeroGradient(_) => {}
                    Kind::Eps0 | Kind::Other => other = true,
                }
            }
            t.noise_runs += usize::from(noise);
            t.square_runs += usize::from(sq);
            t.zero_runs += usize::from(zero);
            t.other_runs += usize::from(other);
        }
        all += t.evaluations;
        with += t.with;
        let noise = if t.noise_runs == 0 {
            "0".to_string()
        } else {
            format!("{} ({} points, at most {} in one)", t.noise_runs, t.noise_points, t.noise_most)
        };
        let _ = writeln!(
            table,
            "| {preset} | {} | {} | {noise} | {} | {} | {} |",
            t.evaluations, t.with, t.square_runs, t.zero_runs, t.other_runs
        );
    }
    let mut md = String::from("## 5. Evaluation warnings\n\n");
    if with == 0 {
        let _ = writeln!(md, "None of the {all} evaluations carries a warning of the evaluation's sanity checks.\n");
        return (md, String::new());
    }
    let _ = writeln!(
        md,
        "The evaluations' sanity checks (an ε = 0 attack, zero input gradients, uniform noise in the ε-ball, Square \
after the gradient attacks) left warnings in {with} of the {all} evaluations recorded (each run's worst-case evaluation \
and, where it ran, its AutoAttack on the first images); [the appendix](study-appendix.md#every-evaluation-warning) \
lists every one. Counts of evaluations per kind (noise and zero gradients only where an attack ran):\n"
    );
    md += "| preset | evaluations | with a warning | noise broke points the attacks missed | Square broke > 1 % the \
gradient attacks missed | all-zero input gradients | other |\n|---|---|---|---|---|---|---|\n";
    md += &table;
    md += "\n";
    md += &square_only(presets);
    if clean_only > 0 {
        let _ = writeln!(
            md,
            "Warnings from evaluations that ran no attack ({clean_only}; attack `none`: the NTT validation measures \
clean accuracy only). There the uniform-noise check had no attack to test, so its warning says nothing about \
gradient masking — a defect of the binary that made them, fixed since (an evaluation without attack now runs no \
noise check); their clean accuracies are unaffected.\n"
        );
    }
    if noise_counted > 0 {
        let _ = writeln!(
            md,
            "In {} made before points broken by noise were subtracted, the binary \
still counted those points robust: such a run's robust accuracy is overstated by that many points of its evaluation \
set (at most {noise_counted_points}). Later binaries subtract them (`noise_broken` in the record).\n",
            evaluations_n(noise_counted)
        );
    }
    if stale_square > 0 {
        let _ = writeln!(
            md,
            "Warnings that say \"Square attack broke 0 of N points\" ({stale_square}): binaries before the messages named \
their own cause printed that line beside any other masking warning, Square had broken nothing (in a worst-case \
evaluation it does not run). They are listed, not counted.\n"
        );
    }
    md += "Zero input gradients mark points no gradient attack can move; the worst case still includes APGD-DLR, and \
the run's numbers are reported as measured.\n\n";
    let appendix = format!(
        "## Every evaluation warning\n\nEvery warning the sanity checks left, as the evaluation wrote it; what \
they mean is in [the study's §5](study.md#5-evaluation-warnings).\n\n| preset | run | attack | warning \
|\n|---|---|---|---|\n{rows}\n"
    );
    (md, appendix)
}

#[cfg(test)]
mod tests {
    use super::super::tests::rec;
    use super::*;

    /// The messages `awt_attack::Warnings::messages` writes (xtask does not link the attack crate, so
    /// the test reads its source: a changed message fails here, not silently in the report).
    #[test]
    fn every_message_the_evaluation_writes_is_read_as_its_kind() {
        let src = std::fs::read_to_string(crate::workspace::root().join("crates/awt-attack/src/eval.rs")).unwrap();
        for prefix in [
            "\"{} of {} correctly classified points have an all-zero input gradient:",
            "\"{} points changed under an ε = 0 attack:",
            "\"GRADIENT MASKING: the gradient-free Square attack broke {} of {} points",
            "\"uniform noise in the ε-ball broke {} points",
        ] {
            assert!(src.contains(prefix), "awt-attack's evaluation no longer writes {prefix}");
        }
        let read = [
            ("777 of 1726 correctly classified points have an all-zero input gradient: x", Kind::ZeroGradient(777)),
            ("3 points changed under an ε = 0 attack: the evaluation pipeline is broken", Kind::Eps0),
            (
                "GRADIENT MASKING: the gradient-free Square attack broke 12 of 1000 points (1.2%) that x",
                Kind::Square { broke: 12, of: 1000 },
            ),
            ("uniform noise in the ε-ball broke 375 points that the attacks did not: x", Kind::Noise(375)),
            ("something new", Kind::Other),
        ];
        for (m, k) in read {
            assert_eq!(kind(m), k, "{m}");
        }
    }

    #[test]
    fn the_summary_counts_each_kind_and_the_appendix_lists_every_warning() {
        let mut a = rec("random", 0.02, 200, (0.8, 0.7, 0.66), 1000, Vec::new());
        a.m.warnings = vec!["uniform noise in the ε-ball broke 2 points that the attacks did not: x".into()];
        a.m.eval.noise_broken = Some(2);
        a.aa.as_mut().unwrap().warnings =
            vec!["GRADIENT MASKING: the gradient-free Square attack broke 17 of 1000 points (1.7%) that x".into()];
        a.aa.as_mut().unwrap().gradient_free_only = Some(17);
        let mut b = rec("awt", 0.05, 100, (0.8, 0.7, 0.66), 1000, Vec::new());
        b.aa = None;
        b.m.warnings = vec![
            "GRADIENT MASKING: the gradient-free Square attack broke 0 of 10000 points (0.0%) that x".into(),
            "uniform noise in the ε-ball broke 5 points that the attacks did not: x".into(),
        ];
        let clean = rec("dense", 1.0, 0, (0.8, 0.7, 0.66), 1000, Vec::new());
        let (final_recs, select) = (vec![a, clean], vec![b]);
        let (md, app) = section(&[("select-mlp", &select), ("final-mlp", &final_recs), ("final-lenet5", &[])]);
        // select-mlp: 1 evaluation, noise 5 points counted robust (no noise_broken), a stale Square line.
        assert!(md.contains("| select-mlp | 1 | 1 | 1 (5 points, at most 5 in one) | 0 | 0 | 0 |"), "{md}");
        // final-mlp: 4 evaluations (2 runs × worst + AutoAttack), 2 with warnings.
        assert!(md.contains("| final-mlp | 4 | 2 | 1 (2 points, at most 2 in one) | 1 | 0 | 0 |"), "{md}");
        assert!(!md.contains("| final-lenet5 |"), "{md}");
        assert!(md.contains("warnings in 3 of the 5 evaluations"), "{md}");
        // Square alone, by density (the dense net first), and the group over 1 %.
        let (dense_row, sparse_row) = ("| 1 | 1 | 0.20 % | 0.2 % | 0 |", "| 0.02 | 1 | 1.70 % | 1.7 % | 1 |");
        assert!(md.find(dense_row).unwrap() < md.find(sparse_row).unwrap(), "{md}");
        assert!(md.contains("of those evaluated): final-mlp: random 0.02 (1 of 1: 1.7 %)."), "{md}");
        assert!(md.contains("In 1 evaluation made before") && md.contains("(at most 5)"), "{md}");
        assert!(md.contains("broke 0 of N points\" (1)"), "{md}");
        assert_eq!(app.lines().filter(|l| l.starts_with("| select-mlp") || l.starts_with("| final-mlp")).count(), 4);
        // Nothing to say: one sentence and no appendix.
        let quiet = vec![rec("dense", 1.0, 0, (0.8, 0.7, 0.66), 1000, Vec::new())];
        let (md, app) = section(&[("final-mlp", &quiet)]);
        assert!(md.contains("None of the 2 evaluations") && app.is_empty(), "{md}");
    }
}
