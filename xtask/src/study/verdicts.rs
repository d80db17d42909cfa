//! Study v2's primary verdicts (docs/protocol.md §7): per net and density, the family of primary
//! claims, each a statement on the paired per-seed differences (AWT − reference), tested one-sided
//! at α = 0.025 and corrected together by Holm's procedure; and the summary "At a glance" reads
//! them in the protocol's order — AWT vs NTT, AWT vs the dense net, AWT vs each baseline at
//! initialisation, AWT vs train-prune-fine-tune, then dynamics. Rendered only once a final preset
//! has records (until then docs/study.md does not change).

use std::fmt::Write as _;

use std::path::Path;

use anyhow::Result;

use super::data::{Measure, Rec, by_seed, variants};
use super::exploratory::{Added, LENET5_ADDED, MLP_ADDED};
use crate::decide::{Statement, holm, test, verdict};
use crate::stats::paired_diffs as diffs;

/// The run variants the final presets give each role (the selected settings are the presets' own
/// `[search]` tables, so AWT and NTT are the plain methods there).
pub(super) struct Roles {
    pub awt: &'static str,
    pub ntt: &'static str,
    pub dense: &'static str,
    /// Baselines at initialisation, each against AWT.
    pub at_init: &'static [&'static str],
    /// Train → prune → fine-tune, compute-matched.
    pub after_training: &'static [&'static str],
    pub random: &'static str,
    /// Exploratory rows added after the final comparison (docs/protocol.md, "Recorded"), with their
    /// names in the summary: outside every family, read with unadjusted intervals.
    pub added: &'static [Added],
}

/// LeNet-300-100's roles (`final-mlp`): 9 primary claims per density.
pub(super) const MLP: Roles = Roles {
    awt: "awt",
    ntt: "ntt",
    dense: "dense",
    at_init: &["random", "snip", "synflow"],
    after_training: &["imp-at-matched", "hydra-matched"],
    random: "random",
    added: MLP_ADDED,
};

/// LeNet-5-Caffe's (`final-lenet5`): 7 claims, without SNIP and IMP-AT.
pub(super) const LENET5: Roles = Roles {
    awt: "awt",
    ntt: "ntt",
    dense: "dense",
    at_init: &["random", "synflow"],
    after_training: &["hydra-matched"],
    random: "random",
    added: LENET5_ADDED,
};

/// One primary claim, decided.
pub(super) struct Claim {
    pub what: String,
    pub statement: Statement,
    /// Paired differences (fractions; the kernel distance in its own units).
    pub diffs: Vec<f64>,
    pub p: f64,
    pub p_holm: f64,
    pub verdict: &'static str,
}

/// Mean over every epoch 0..T, epoch 0 included (protocol §6).
pub(super) fn over_all_epochs(r: &Rec) -> Option<f64> {
    let v: Vec<f64> = r.dynamics.iter().map(|e| e.rel_distance).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The family of one cell (net `recs`, density `d`), Holm-corrected over every claim the protocol
/// names; a claim without two paired seeds is listed without a verdict and counted with p = 1.
pub(super) fn family(recs: &[Rec], d: f64, roles: &Roles) -> Vec<Claim> {
    family_on(recs, d, roles, Measure::Worst)
}

/// The family's accuracy claims read on `measure` (the kernel-distance claim only with the
/// headline, `Measure::Worst`): Holm-corrected for the headline; for any other measure
/// exploratory, so `p_holm` is the unadjusted p (protocol §7).
fn family_on(recs: &[Rec], d: f64, roles: &Roles, measure: Measure) -> Vec<Claim> {
    let primary = measure == Measure::Worst;
    let head = |r: &Rec| r.measure(measure);
    let awt = by_seed(recs, roles.awt, d, head);
    let mut raw: Vec<(String, Statement, Vec<f64>)> = Vec::new();
    let ntt = diffs(&awt, &by_seed(recs, roles.ntt, d, head));
    raw.push(("AWT is equivalent to NTT (within ±1 point)".into(), Statement::Equivalent, ntt.clone()));
    raw.push(("AWT vs NTT".into(), Statement::Beats, ntt));
    raw.push((
        "AWT matches the dense net".into(),
        Statement::Matches,
        diffs(&awt, &by_seed(recs, roles.dense, d, head)),
    ));
    for b in roles.at_init.iter().chain(roles.after_training) {
        raw.push((format!("AWT vs {b}"), Statement::Beats, diffs(&awt, &by_seed(recs, b, d, head))));
    }
    let kd = |v: &str| by_seed(recs, v, d, over_all_epochs);
    raw.extend(primary.then(|| {
        (
            "AWT keeps closer to the dense net's adversarial NTK than a random ticket (random − AWT mean kernel distance, epochs 0..T)"
                .into(),
            Statement::Beats,
            diffs(&kd(roles.random), &kd(roles.awt)),
        )
    }));
    // A claim without two paired seeds has no interval: it stays in the family with p = 1, so
    // that Holm always corrects over the protocol's whole family, never over the claims that
    // happen to have data (which would be the smaller, anti-conservative correction).
    let tested: Vec<_> = raw.iter().map(|(_, s, d)| (d.len() >= 2).then(|| test(*s, d))).collect();
    let raw_p: Vec<f64> = tested.iter().map(|t| t.as_ref().map_or(1.0, |t| t.p)).collect();
    let adj = if primary { holm(&raw_p) } else { raw_p.clone() };
    raw.into_iter()
        .zip(tested.iter().zip(raw_p.into_iter().zip(adj)))
        .map(|((what, statement, diffs), (t, (p, p_holm)))| Claim {
            what,
            statement,
            diffs,
            p,
            p_holm,
            verdict: t.as_ref().map_or(NO_VERDICT, |t| verdict(t, p_holm)),
        })
        .collect()
}

/// The accuracy claims as (claim, differences): without the equivalence claim, which reads the
/// same differences as "AWT vs NTT", and the kernel distance, which is not in points.
fn accuracy_rows(claims: &[Claim]) -> Vec<(&str, &[f64])> {
    claims
        .iter()
        .filter(|c| c.statement != Statement::Equivalent && !c.what.contains("kernel distance"))
        .map(|c| (c.what.as_str(), c.diffs.as_slice()))
        .collect()
}

/// The verdict of a claim without two paired seeds.
pub(super) const NO_VERDICT: &str = "no verdict yet (fewer than two paired seeds)";

impl Claim {
    /// Whether the claim has an interval (two paired seeds or more).
    fn tested(&self) -> bool {
        self.diffs.len() >= 2
    }
    /// Its mean difference and 95 % interval: in points, or, for the kernel-distance claim with
    /// `kernel_units`, in the distance's own units.
    fn ci(&self, kernel_units: bool) -> String {
        let s = crate::stats::summary(&self.diffs);
        if kernel_units && self.what.contains("kernel distance") { s.num_ci() } else { s.pct_ci() }
    }
    /// Its p-values for a table: "—" where it is untested.
    fn p_cells(&self) -> (String, String) {
        if self.tested() {
            (format!("{:.3}", self.p), format!("{:.3}", self.p_holm))
        } else {
            ("—".into(), "—".into())
        }
    }
}

/// The cell's table: every claim with its interval, raw and Holm-adjusted p and verdict.
pub(super) fn table(claims: &[Claim], kernel_units: bool) -> Result<String> {
    let mut md = String::from(
        "| primary claim | statement | paired seeds | AWT − reference [95 % CI] | p | p (Holm) | verdict |\n|---|---|---|---|---|---|---|\n",
    );
    for c in claims {
        let statement = statement_name(c.statement);
        let (p, p_holm) = c.p_cells();
        let (n, ci) = (c.diffs.len(), c.ci(kernel_units));
        writeln!(md, "| {} | {statement} | {n} | {ci} | {p} | {p_holm} | {} |", c.what, c.verdict)?;
    }
    Ok(md)
}

/// The primary accuracy claims read on AutoAttack (first `aa_n` images) instead of the worst case:
/// exploratory, unadjusted (protocol §7). AutoAttack ends with Square, a gradient-free attack the
/// worst case lacks, so where sparse nets mask gradients (§5) this reading is the stricter one.
fn autoattack_reading(recs: &[Rec], d: f64, roles: &Roles, aa_n: Option<u64>) -> Result<String> {
    let claims = family_on(recs, d, roles, Measure::AutoAttack);
    if !claims.iter().any(Claim::tested) {
        return Ok(String::new());
    }
    let aa = aa_n.map_or("AutoAttack".to_string(), |n| format!("AutoAttack (first {n})"));
    let mut md = format!(
        "The same claims read on {aa} instead of the worst case (exploratory: unadjusted, no verdict drawn from \
it). AutoAttack ends with Square, a gradient-free attack the worst case lacks (§5).\n\n| claim | statement | paired \
seeds | AWT − reference [95 % CI] | p | reading (unadjusted) |\n|---|---|---|---|---|---|\n"
    );
    for c in &claims {
        let s = crate::stats::summary(&c.diffs);
        let (p, _) = c.p_cells();
        writeln!(
            md,
            "| {} | {} | {} | {} | {p} | {} |",
            c.what,
            statement_name(c.statement),
            s.n,
            s.pct_ci(),
            c.verdict
        )?;
    }
    Ok(md + "\n")
}

fn statement_name(s: Statement) -> &'static str {
    match s {
        Statement::Equivalent => "equivalent (TOST)",
        Statement::Matches => "matches (≥ −1 point)",
        Statement::Beats => "beats",
    }
}

/// One line per question, in the protocol's order, from the decided claims: AWT vs NTT, AWT vs
/// the dense net, AWT vs the best baseline at initialisation (the one with the highest mean test
/// worst case, named as such; each baseline's verdict beside it), AWT vs train → prune →
/// fine-tune, then dynamics.
pub(super) fn glance(claims: &[Claim], recs: &[Rec], roles: &Roles, net: &str, d: f64) -> String {
    let find = |what: &str| claims.iter().find(|c| c.what == what);
    let say = |what: &str| find(what).map_or(NO_VERDICT, |c| c.verdict);
    // The claim's interval before its verdict, where it has one: "-0.9 [-2.4, +0.6] open".
    let with_ci = |what: &str| match find(what).filter(|c| c.tested()) {
        Some(c) => format!("{} {}", c.ci(true), c.verdict),
        None => NO_VERDICT.to_string(),
    };
    let vs = |b: &str| with_ci(&format!("AWT vs {b}"));
    let eq = find("AWT is equivalent to NTT (within ±1 point)").filter(|c| c.tested());
    let ntt = match eq {
        None => NO_VERDICT.to_string(),
        Some(c) => {
            let ci = c.ci(false);
            let equivalent = if c.verdict == "not shown" {
                "equivalence within ±1 point not shown"
            } else {
                "equivalent within ±1 point"
            };
            let direction = match say("AWT vs NTT") {
                "better" => "AWT better",
                "worse" => "NTT better",
                _ => "neither shown better",
            };
            format!("{ci}: {equivalent}, {direction}")
        }
    };
    let mut parts = vec![format!("AWT − NTT {ntt}")];
    parts.push(format!("AWT matches the dense net: AWT − dense {}", with_ci("AWT matches the dense net")));
    let mean_worst = |b: &str| {
        let v = super::data::values(&by_seed(recs, b, d, |r| r.measure(Measure::Worst)));
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let best = roles.at_init.iter().filter_map(|b| Some((*b, mean_worst(b)?))).max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((best, mean)) = best {
        let others: Vec<String> =
            roles.at_init.iter().filter(|b| **b != best).map(|b| format!("{b} {}", vs(b))).collect();
        parts.push(format!(
            "AWT vs the best baseline at initialisation ({best}, mean worst case {:.1} %): AWT − {best} {}{}",
            100.0 * mean,
            vs(best),
            if others.is_empty() { String::new() } else { format!(" (the others: {})", others.join(", ")) }
        ));
    }
    let after: Vec<String> = roles.after_training.iter().map(|b| format!("{b} {}", vs(b))).collect();
    parts.push(format!("AWT vs train → prune → fine-tune: {}", after.join(", ")));
    if let Some(c) = claims.iter().find(|c| c.what.contains("kernel distance")) {
        parts.push(format!("dynamics (random − AWT kernel distance > 0): {}", with_ci(&c.what)));
    }
    let untested = claims.iter().filter(|c| !c.tested()).count();
    let of = match untested {
        0 => String::new(),
        k => format!(", {k} of them without two paired seeds yet"),
    };
    format!("- **{net}, density {d}** (Holm over {} claims{of}): {}.\n", claims.len(), parts.join("; "))
}

/// One net's final records: its name, its architecture, its runs, its roles and its densities.
pub(super) type Cell<'a> = (&'a str, &'a str, &'a [Rec], &'a Roles, &'a [f64]);

/// Study v2's lines for "At a glance" and its section, both empty while no final preset has a
/// record. With `fig_dir`, each net and density also gets its figures there (protocol §8): every
/// ticket against the dense net with its interval, and the kernel distance over epochs 0..T.
pub(super) fn section(cells: &[Cell], fig_dir: Option<&Path>) -> Result<(String, String, String, String)> {
    let (mut glance_md, mut md, mut appendix) = (String::new(), String::new(), String::new());
    let mut added_md = String::new();
    // Whether a cell's precision table has said what its columns mean.
    let mut explained = false;
    for (net, arch, recs, roles, densities) in cells {
        if recs.is_empty() {
            continue;
        }
        if md.is_empty() {
            md = format!(
                "## Study v2: the final comparison (test split, fresh seeds)\n\nSettings selected on the validation split \
(docs/selection.md); evaluation seeds never used in a selection; the primary claims of each net and density decided by \
docs/protocol.md §7 after Holm's correction over the cell's whole family (a claim without two paired seeds yet stays in \
it, counted with p = 1, and has no verdict). Each test is one-sided at α = {a}, so a claim holds or fails only where \
its Holm-adjusted p is below {a}: an interval that excludes 0 (or −1 point) with a larger Holm p stays open. The protocol was committed in `{}`, before any run of study v2.\n\n",
                &super::selection::PROTOCOL_COMMIT[..7],
                a = crate::decide::ALPHA
            );
        }
        let aa_n = recs.iter().find_map(|r| r.aa.as_ref().map(|a| a.n));
        for &d in *densities {
            let claims = family(recs, d, roles);
            writeln!(md, "### {net}, density {d}\n")?;
            let vs = super::exploratory::versus_awt(recs, d, roles.awt);
            if !vs.is_empty() {
                writeln!(appendix, "### {net}, density {d}\n\n{vs}")?;
            }
            if !claims.iter().any(Claim::tested) {
                md += "No claim has two paired seeds yet.\n\n";
                md += &super::exploratory::levels(recs, d, aa_n);
                continue;
            }
            md += &table(&claims, true)?;
            md += "\n";
            let precision = super::precision::table(&accuracy_rows(&claims), !explained);
            explained |= !precision.is_empty();
            md += &precision;
            md += &autoattack_reading(recs, d, roles, aa_n)?;
            md += &super::exploratory::levels(recs, d, aa_n);
            md += &super::allocation::table(recs, d);
            glance_md += &glance(&claims, recs, roles, net, d);
            added_md += &super::exploratory::added(recs, net, d, roles.awt, roles.added);
            if let Some(fig_dir) = fig_dir {
                let tag = format!("v2-{arch}");
                let of = |v: &str, d: f64| super::allocation::colour(recs, v, d);
                let colours = super::figures::Colours { groups: &super::allocation::GROUPS, of: &of };
                let fig =
                    super::figures::vs_dense(recs, &variants(recs), &[d], Measure::Worst, fig_dir, &tag, &colours)?;
                if !fig.is_empty() {
                    md += &format!("{fig}{}\n\n", super::allocation::GROUPS_NOTE);
                }
                let file = format!("{tag}-added-d{d}.svg");
                md += &super::exploratory::added_figure(recs, d, roles.awt, roles.added, fig_dir, &file)?;
                let drawn: Vec<&str> =
                    [roles.awt, roles.ntt].into_iter().chain(roles.at_init.iter().copied()).collect();
                let file = format!("{tag}-dyn-distance-d{d}.svg");
                md += &super::dynamics::distance_figure(recs, d, fig_dir, &drawn, &file)?;
            }
        }
    }
    if !glance_md.is_empty() {
        glance_md = format!(
            "**Study v2, the final comparison** (test split, fresh seeds; primary claims after Holm):\n\n{glance_md}\n"
        );
    }
    if !added_md.is_empty() {
        added_md = format!(
            "**Added after the final comparison** (exploratory: docs/protocol.md, \"Recorded\", stated before these runs; \
outside every Holm family, unadjusted 95 % intervals, no verdict; NTK-SAP at its reference settings ranked globally, and as its controls \
the same masks shuffled within each layer, NTK-SAP ranked per layer (AWT's allocation), and AWT's search keeping in each layer as many \
weights as NTK-SAP's global mask of its seed (NTK-SAP's allocation); SynFlow's and SNIP's masks shuffled within each layer the same way; \
random masks at Erdős–Rényi-kernel layer densities, and AWT's search keeping their layer counts; on LeNet-5-Caffe the NTK-SAP (AWT's search at its \
counts included), SynFlow and ERK controls; the same recipe and seeds):\n\n{added_md}\n"
        );
    }
    if !appendix.is_empty() {
        appendix = format!(
            "## Study v2: AWT against every other variant (exploratory)\n\nTest split, fresh seeds; AWT − X paired by seed \
with unadjusted 95 % intervals, read by the one rule's \"beats\" row but without Holm's correction, so no verdict: \
\"AWT higher\" or \"X higher\" where the interval excludes 0. The primary claims are in [the study](study.md).\n\n{appendix}"
        );
    }
    Ok((glance_md, added_md, md, appendix))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dyn_line, rec, tempfile_dir};
    use super::*;

    /// Five seeds made up so that each claim has a known answer: AWT 0.2 points above NTT (tight:
    /// equivalent and better at once — "better, by less than a point"), 0.5 under the dense net (matches), 4 above random and SNIP, level
    /// with SynFlow (open), 3 under both compute-matched baselines (worse), and nearer the dense
    /// kernel than random by 0.1 at every epoch (better). Holm adjusts over the protocol's whole
    /// family, the table and the summary say so, and a claim without two seeds stays in the family
    /// without a verdict.
    #[test]
    fn the_primary_family_is_decided_after_holm() {
        let jitter = [0.0, 0.001, -0.001, 0.002, -0.002];
        let mut recs = Vec::new();
        for seed in 0..5u64 {
            let j = jitter[seed as usize];
            let at = |m: &str, d: f64, acc: f64| rec(m, d, seed, (0.8, acc, acc), 1000, Vec::new());
            recs.push(at("dense", 1.0, 0.600 + j));
            let mut awt = at("awt", 0.05, 0.595 + j + j / 2.0);
            awt.dynamics = (0..4).map(|e| dyn_line(e, 0.30 + j)).collect();
            recs.push(awt);
            recs.push(at("ntt", 0.05, 0.593 + j));
            let mut random = at("random", 0.05, 0.555 + j);
            random.dynamics = (0..4).map(|e| dyn_line(e, 0.40 + j / 2.0)).collect();
            recs.push(random);
            recs.push(at("snip", 0.05, 0.555 - j));
            recs.push(at("synflow", 0.05, 0.595 - 3.0 * j));
            recs.push(at("imp-at-matched", 0.05, 0.625 + j));
            recs.push(at("hydra-matched", 0.05, 0.625 - j));
        }
        let claims = family(&recs, 0.05, &MLP);
        assert_eq!(claims.len(), 9);
        let v = |what: &str| claims.iter().find(|c| c.what == what).map(|c| c.verdict).unwrap_or("missing");
        assert_eq!(v("AWT is equivalent to NTT (within ±1 point)"), "equivalent (within ±1 point)");
        assert_eq!(v("AWT vs NTT"), "better");
        assert_eq!(v("AWT matches the dense net"), "holds");
        assert_eq!((v("AWT vs random"), v("AWT vs snip")), ("better", "better"));
        assert_eq!(v("AWT vs synflow"), "open");
        assert_eq!((v("AWT vs imp-at-matched"), v("AWT vs hydra-matched")), ("worse", "worse"));
        assert_eq!(claims.last().unwrap().verdict, "better", "the dynamics claim");
        // Holm never lowers a p-value, and the smallest is multiplied by the family's size.
        assert!(claims.iter().all(|c| c.p_holm >= c.p && c.p_holm <= 1.0));
        let min = claims.iter().min_by(|a, b| a.p.total_cmp(&b.p)).unwrap();
        assert!((min.p_holm - (9.0 * min.p).min(1.0)).abs() < 1e-12);
        // Read on AutoAttack: the accuracy claims only (no kernel claim), unadjusted.
        let aa = family_on(&recs, 0.05, &MLP, Measure::AutoAttack);
        assert_eq!(aa.len(), 8);
        assert!(aa.iter().all(|c| c.p_holm == c.p && !c.what.contains("kernel")));
        let md = table(&claims, true).unwrap();
        assert_eq!(md.lines().count(), 2 + 9, "{md}");
        assert!(md.contains("| AWT vs imp-at-matched | beats | 5 | -3.0 ["), "{md}");
        let line = glance(&claims, &recs, &MLP, "LeNet-300-100", 0.05);
        assert!(line.starts_with("- **LeNet-300-100, density 0.05** (Holm over 9 claims): AWT − NTT +0.2 [+0.1, +0.3]: equivalent within ±1 point, AWT better; AWT matches the dense net: AWT − dense -0.5 [-0.6, -0.4] holds;"), "{line}");
        // The best baseline at initialisation is SynFlow (mean 59.5 % against 55.5 %), named as such.
        assert!(
            line.contains("; AWT vs the best baseline at initialisation (synflow, mean worst case 59.5 %): AWT − synflow +0.0 [-0.9, +0.9] open (the others: random +4.0 [+3.9, +4.1] better, snip +4.0 [+3.5, +4.5] better); AWT vs train → prune → fine-tune: imp-at-matched -3.0 [-3.1, -2.9] worse, hydra-matched -3.0 [-3.5, -2.5] worse; dynamics (random − AWT kernel distance > 0): +0.100 [+0.099, +0.101] better.\n"),
            "{line}"
        );
        // LeNet-5's family has no SNIP and no IMP-AT. One seed of HYDRA gives no interval: the
        // claim stays in the family without a verdict, and Holm still corrects over all 7.
        recs.retain(|r| r.variant() != "hydra-matched" || r.m.seed == 0);
        let seven = family(&recs, 0.05, &LENET5);
        assert_eq!(seven.len(), 7, "{:?}", seven.iter().map(|c| &c.what).collect::<Vec<_>>());
        assert!(seven.iter().all(|c| !c.what.contains("snip") && !c.what.contains("imp-at")));
        let hydra = seven.iter().find(|c| c.what == "AWT vs hydra-matched").unwrap();
        assert_eq!((hydra.verdict, hydra.p, hydra.p_holm, hydra.diffs.len()), (NO_VERDICT, 1.0, 1.0, 1));
        let min = seven.iter().min_by(|a, b| a.p.total_cmp(&b.p)).unwrap();
        assert!((min.p_holm - (7.0 * min.p).min(1.0)).abs() < 1e-12, "Holm over the whole family");
        let md = table(&seven, true).unwrap();
        assert!(md.contains("| AWT vs hydra-matched | beats | 1 | -3.0 (one seed) | — | — | no verdict yet (fewer than two paired seeds) |"), "{md}");
        let line = glance(&seven, &recs, &LENET5, "LeNet-5-Caffe", 0.05);
        assert!(
            line.starts_with(
                "- **LeNet-5-Caffe, density 0.05** (Holm over 7 claims, 1 of them without two paired seeds yet):"
            ),
            "{line}"
        );
        assert!(
            line.contains(
                "AWT vs train → prune → fine-tune: hydra-matched no verdict yet (fewer than two paired seeds);"
            ),
            "{line}"
        );
        // The section: nothing without records, a table per density with them.
        let figs = tempfile_dir();
        let none = section(&[("LeNet-5-Caffe", "lenet5-caffe", &[], &LENET5, &[0.05])], Some(&figs)).unwrap();
        assert_eq!(none, (String::new(), String::new(), String::new(), String::new()));
        assert_eq!(std::fs::read_dir(&figs).unwrap().count(), 0, "no figure without records");
        let cell = ("LeNet-300-100", "lenet-300-100", &recs[..], &MLP, &[0.05, 0.02][..]);
        let (g, added, md, appendix) = section(&[cell], Some(&figs)).unwrap();
        assert!(
            g.starts_with("**Study v2, the final comparison**") && g.contains("- **LeNet-300-100, density 0.05**"),
            "{g}"
        );
        assert_eq!(added, "", "no row added after the comparison has a record");
        assert!(md.contains("### LeNet-300-100, density 0.02\n\nNo claim has two paired seeds yet."), "{md}");
        // After the primary table, the same claims on AutoAttack, labelled exploratory.
        let aa_at = md.find("The same claims read on AutoAttack (first 1000) instead of the worst case").expect(&md);
        assert!(md.find("| primary claim |").unwrap() < aa_at, "{md}");
        assert!(md[aa_at..].contains("| AWT vs imp-at-matched | beats | 5 | -3.0 ["), "{md}");
        // Beside the claims, exploratory: each variant's level, and AWT against every other variant
        // in the appendix (the dense net included; nothing at a density without AWT runs).
        assert!(md.contains("| variant | seeds | worst case | AutoAttack (first 1000) | Square alone | clean |\n|---|---|---|---|---|---|\n| dense | 5 |"), "{md}");
        assert!(appendix.starts_with("## Study v2: AWT against every other variant (exploratory)"), "{appendix}");
        assert!(appendix.contains("### LeNet-300-100, density 0.05\n\n| X | paired seeds |"), "{appendix}");
        assert!(
            appendix.lines().any(|l| l.starts_with("| random | 5 |") && l.contains("| AWT higher |")),
            "{appendix}"
        );
        assert!(!appendix.contains("density 0.02"), "{appendix}");
        // The cell's figures: each ticket against the dense net, and the kernel distance from epoch 0.
        for f in ["v2-lenet-300-100-vs-dense-d0.05.svg", "v2-lenet-300-100-dyn-distance-d0.05.svg"] {
            assert!(md.contains(&format!("(figures/{f})")), "{f} not shown: {md}");
            let svg = std::fs::read_to_string(figs.join(f)).unwrap();
            assert!(svg.contains("awt") && svg.contains("random"), "{f}");
        }
        // Without a figure folder (the quick report's summary), the same text and no figures.
        assert_eq!(section(&[cell], None).unwrap().0, g);
        std::fs::remove_dir_all(&figs).unwrap();
    }
}
