//! Study v2's exploratory results (docs/protocol.md §7): everything outside the primary family —
//! each variant's own numbers, and AWT against every other variant on the worst case, AutoAttack and
//! clean accuracy — with unadjusted 95 % intervals, labelled exploratory. The variants' numbers go to
//! docs/study.md under each net and density; the AWT − X comparisons to the appendix; the rows added
//! after the comparison to the summary, each with the differences it is read by (also as a figure).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::data::{Measure, Rec, by_seed, values, variants};
use crate::plot::{Row, forest};
use crate::stats::{Summary, paired, summary};

/// The three measures, as their columns are headed.
const MEASURES: [(Measure, &str); 3] =
    [(Measure::Worst, "worst case"), (Measure::AutoAttack, "AutoAttack"), (Measure::Clean, "clean")];

/// A variant's runs at density `d` (the dense net at density 1).
fn scores(recs: &[Rec], v: &str, d: f64, m: Measure) -> Vec<(u64, f64)> {
    by_seed(recs, v, if v == "dense" { 1.0 } else { d }, |r| r.measure(m))
}

/// "m [lo, hi]" in % for a variant's mean over seeds; one seed gives its value, no interval. The
/// interval is cut to 0–100 %, the range a rate can take: the true mean lies in it whenever it lies
/// in the t-interval, so the cut keeps the coverage (two seeds gave "80.3 [59.0, 101.6]").
pub(super) fn level(s: &Summary) -> String {
    match (s.n, s.ci95()) {
        (0, _) => "—".into(),
        (_, Some((lo, hi))) => {
            format!("{:.1} [{:.1}, {:.1}]", 100.0 * s.mean, 100.0 * lo.max(0.0), 100.0 * hi.min(1.0))
        }
        _ => format!("{:.1} (one seed)", 100.0 * s.mean),
    }
}

/// The one rule's "beats" reading of AWT − X, unadjusted.
fn reading(s: &Summary, x: &str) -> String {
    reading_of(s, "AWT", x)
}

/// The one rule's "beats" reading of A − B, unadjusted.
fn reading_of(s: &Summary, a: &str, x: &str) -> String {
    match s.ci95() {
        Some((lo, _)) if lo > 0.0 => format!("{a} higher"),
        Some((_, hi)) if hi < 0.0 => format!("{x} higher"),
        Some(_) => "no difference shown".into(),
        None => "no interval".into(),
    }
}

/// The variants at density `d` (and the dense net), in report order.
fn cell_variants(recs: &[Rec], d: f64) -> Vec<String> {
    variants(recs)
        .into_iter()
        .filter(|v| {
            recs.iter()
                .any(|r| r.variant() == *v && (r.m.density.get() - if v == "dense" { 1.0 } else { d }).abs() < 1e-12)
        })
        .collect()
}

/// Each variant's mean over its seeds with a 95 % interval, per measure (for docs/study.md).
pub(super) fn levels(recs: &[Rec], d: f64, aa_n: Option<u64>) -> String {
    let vs = cell_variants(recs, d);
    if vs.is_empty() {
        return String::new();
    }
    let aa = aa_n.map_or("AutoAttack".to_string(), |n| format!("AutoAttack (first {n})"));
    let mut md = format!(
        "Exploratory (unadjusted 95 % intervals over seeds, cut to 0–100 %; no verdict is drawn from them): each variant's robust \
accuracy (worst case of PGD-20, APGD-CE, APGD-DLR), {aa}, what Square alone broke in it after its gradient attacks \
(in % of those images; over 1 is a sign of gradient masking, §5), and clean accuracy on the test split, in %.\n\n\
| variant | seeds | worst case | {aa} | Square alone | clean |\n|---|---|---|---|---|---|\n"
    );
    for v in &vs {
        let mut cols: Vec<String> =
            MEASURES.iter().map(|(m, _)| level(&summary(&values(&scores(recs, v, d, *m))))).collect();
        cols.insert(2, level(&summary(&values(&scores(recs, v, d, Measure::SquareOnly)))));
        let n = scores(recs, v, d, Measure::Worst).len();
        let _ = writeln!(md, "| {v} | {n} | {} |", cols.join(" | "));
    }
    md + "\n"
}

/// A row added after the final comparison (docs/protocol.md, "Recorded"): its variant, its name in
/// the summary, and the differences read for it, the first one the row's own (the row is left out
/// until that one has a paired seed).
#[derive(Clone, Copy)]
pub(super) struct Added {
    pub variant: &'static str,
    pub label: &'static str,
    pub read: &'static [Versus],
}

/// NTK-SAP at its reference settings, ranked globally.
const NTK_SAP: Added = Added { variant: "ntk-sap-global", label: "NTK-SAP", read: &[Versus::Awt, Versus::Dense] };

/// Its masks permuted within each layer.
const NTK_SAP_SHUFFLED: Added = Added {
    variant: "ntk-sap-global-shuffled",
    label: "NTK-SAP shuffled",
    read: &[Versus::Of("ntk-sap-global", "NTK-SAP")],
};

/// SynFlow's masks permuted within each layer.
const SYNFLOW_SHUFFLED: Added = Added {
    variant: "synflow-shuffled",
    label: "SynFlow shuffled",
    read: &[Versus::Of("synflow", "SynFlow"), Versus::Minus("ntk-sap-global-shuffled", "NTK-SAP shuffled")],
};

/// Random masks at Erdős–Rényi-kernel layer densities.
const RANDOM_ERK: Added = Added {
    variant: "random-erk",
    label: "random ERK",
    read: &[
        Versus::Awt,
        Versus::Dense,
        Versus::Minus("random", "random"),
        Versus::Minus("ntk-sap-global-shuffled", "NTK-SAP shuffled"),
    ],
};

/// AWT's search keeping in each layer as many weights as NTK-SAP's global mask of its seed.
const AWT_NTK_SAP_LAYERS: Added = Added {
    variant: "awt-ntk-sap-layers",
    label: "AWT at NTK-SAP's layers",
    read: &[
        Versus::Minus("ntk-sap-global", "NTK-SAP"),
        Versus::Minus("ntk-sap-global-shuffled", "NTK-SAP shuffled"),
        Versus::Minus("awt", "AWT"),
    ],
};

/// LeNet-300-100's rows added after the final comparison (`final-mlp`; docs/protocol.md, "Recorded").
pub(super) const MLP_ADDED: &[Added] = &[
    NTK_SAP,
    NTK_SAP_SHUFFLED,
    Added {
        variant: "ntk-sap-layerwise",
        label: "NTK-SAP per layer",
        read: &[Versus::Awt, Versus::Dense, Versus::Minus("random", "random"), Versus::Of("ntk-sap-global", "NTK-SAP")],
    },
    AWT_NTK_SAP_LAYERS,
    SYNFLOW_SHUFFLED,
    RANDOM_ERK,
    Added { variant: "snip-shuffled", label: "SNIP shuffled", read: &[Versus::Of("snip", "SNIP"), Versus::Awt] },
    Added {
        variant: "awt-erk-layers",
        label: "AWT at ERK's layers",
        read: &[
            Versus::Minus("awt", "AWT"),
            Versus::Minus("random-erk", "random ERK"),
            Versus::Minus("awt-ntk-sap-layers", "AWT at NTK-SAP's layers"),
        ],
    },
];

/// LeNet-5-Caffe's rows added after the final comparison (`final-lenet5`; docs/protocol.md,
/// "Recorded"): the same controls as LeNet-300-100's, at density 0.05, and AWT at NTK-SAP's counts.
pub(super) const LENET5_ADDED: &[Added] =
    &[NTK_SAP, NTK_SAP_SHUFFLED, AWT_NTK_SAP_LAYERS, SYNFLOW_SHUFFLED, RANDOM_ERK];

/// One difference read for an added row X, paired by seed.
#[derive(Clone, Copy)]
pub(super) enum Versus {
    /// AWT − X, worst case and AutoAttack.
    Awt,
    /// X − dense, worst case.
    Dense,
    /// Y − X for the variant Y (and its name), worst case and AutoAttack: X as Y's control.
    Of(&'static str, &'static str),
    /// X − Y, worst case and AutoAttack.
    Minus(&'static str, &'static str),
}

/// One difference read for an added row: its two sides' labels and the paired differences on the
/// worst case and (not against the dense net) on AutoAttack.
struct Read<'a> {
    a: &'a str,
    b: &'a str,
    worst: Summary,
    aa: Option<Summary>,
}

/// The [`Versus`] `v` of the row `x`, paired by seed; `None` without a paired seed.
fn read<'a>(recs: &[Rec], d: f64, awt: &'a str, x: (&'a str, &'a str), v: &Versus) -> Option<Read<'a>> {
    let ((a, a_label), (b, b_label)) = match *v {
        Versus::Awt => ((awt, "AWT"), x),
        Versus::Of(y, label) => ((y, label), x),
        Versus::Minus(y, label) => (x, (y, label)),
        Versus::Dense => (x, ("dense", "dense")),
    };
    let pair = |m: Measure| paired(&scores(recs, a, d, m), &scores(recs, b, d, m));
    let worst = pair(Measure::Worst);
    let aa = Some(pair(Measure::AutoAttack)).filter(|s| s.n > 0 && !matches!(v, Versus::Dense));
    (worst.n > 0).then_some(Read { a: a_label, b: b_label, worst, aa })
}

/// A [`Read`] as the summary says it, with the unadjusted reading.
fn say(r: &Read, dense: bool) -> String {
    let w = &r.worst;
    // One seed says "(one seed)" in its value already; the dense net's pairs are not counted.
    let over = if w.n > 1 && !dense { format!(" over {} paired seeds", w.n) } else { String::new() };
    let mut part = format!("{} − {} on the worst case {}{over}: {}", r.a, r.b, w.pct_ci(), reading_of(w, r.a, r.b));
    if let Some(aa) = &r.aa {
        let _ = write!(part, "; on AutoAttack {}: {}", aa.pct_ci(), reading_of(aa, r.a, r.b));
    }
    part
}

/// One difference of [`Versus`] for the row `x`, or `None` without a paired seed.
fn versus(recs: &[Rec], d: f64, awt: &str, x: (&str, &str), v: &Versus) -> Option<String> {
    read(recs, d, awt, x, v).map(|r| say(&r, matches!(v, Versus::Dense)))
}

/// The legend of [`added_figure`]'s colours.
const READ_GROUPS: [&str; 4] = ["X − dense", "score − its shuffle", "with AWT", "other"];

/// Which of [`READ_GROUPS`] a difference `a − b` belongs to.
fn read_group(a: &str, b: &str) -> usize {
    if b == "dense" {
        0
    } else if b == format!("{a} shuffled") {
        1
    } else if a.starts_with("AWT") || b.starts_with("AWT") {
        2
    } else {
        3
    }
}

/// Every difference the added rows are read by at density `d`, on the worst case, as a forest plot
/// in `fig_dir/file` (in the summary's order); empty where none has a paired seed.
pub(super) fn added_figure(
    recs: &[Rec],
    d: f64,
    awt: &str,
    rows: &[Added],
    fig_dir: &Path,
    file: &str,
) -> Result<String> {
    let mut drawn: Vec<Row> = Vec::new();
    for row in rows {
        let x = (row.variant, row.label);
        for r in row.read.iter().filter_map(|v| read(recs, d, awt, x, v)) {
            let label = format!("{} − {}", r.a, r.b);
            if drawn.iter().any(|o| o.label.starts_with(&format!("{label} ("))) {
                continue;
            }
            let group = read_group(r.a, r.b);
            let n = r.worst.n;
            drawn.push(Row {
                label: format!("{label} ({n} seed{})", if n == 1 { "" } else { "s" }),
                value: 100.0 * r.worst.mean,
                ci: r.worst.ci95().map(|(lo, hi)| (100.0 * lo, 100.0 * hi)),
                group,
            });
        }
    }
    if drawn.is_empty() {
        return Ok(String::new());
    }
    let title = format!("rows added after the comparison, density {d}: worst case, paired (unadjusted 95 %)");
    let p = fig_dir.join(file);
    std::fs::write(&p, forest(&title, "points", &drawn, &READ_GROUPS))
        .with_context(|| format!("cannot write {}", p.display()))?;
    Ok(format!(
        "![the rows added after the comparison: each difference they are read by, density {d}](figures/{file})\n\n"
    ))
}

/// The summary's lines for the rows added after the final comparison, one per row, each with its
/// differences ([`Versus`]) paired by seed with unadjusted intervals and the one rule's reading, and
/// X's own level. Empty until one of them has a record paired with its first reference.
pub(super) fn added(recs: &[Rec], net: &str, d: f64, awt: &str, rows: &[Added]) -> String {
    let mut parts = Vec::new();
    for row in rows {
        let x = (row.variant, row.label);
        let mut read = row.read.iter();
        let Some(first) = read.next().and_then(|v| versus(recs, d, awt, x, v)) else { continue };
        let mut part = first;
        for more in read.filter_map(|v| versus(recs, d, awt, x, v)) {
            let _ = write!(part, "; {more}");
        }
        let own = level(&summary(&values(&scores(recs, row.variant, d, Measure::Worst))));
        let whose = if row.label.ends_with('s') { format!("{}'", row.label) } else { format!("{}'s", row.label) };
        let _ = write!(part, " ({whose} worst case {own} %)");
        parts.push(format!("  - {part}"));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("- **{net}, density {d}**:\n{}\n", parts.join(";\n"))
}

/// AWT − X for every other variant X, per measure, paired by seed, with the unadjusted reading
/// (for the appendix).
pub(super) fn versus_awt(recs: &[Rec], d: f64, awt: &str) -> String {
    let vs: Vec<String> = cell_variants(recs, d).into_iter().filter(|v| v != awt).collect();
    if vs.is_empty() || scores(recs, awt, d, Measure::Worst).is_empty() {
        return String::new();
    }
    let mut md = String::from("| X | paired seeds |");
    for (_, name) in MEASURES {
        let _ = write!(md, " AWT − X, {name} [95 % CI] | reading |");
    }
    md += "\n|---|---|";
    md += &"---|---|".repeat(MEASURES.len());
    md += "\n";
    for x in &vs {
        let n = paired(&scores(recs, awt, d, Measure::Worst), &scores(recs, x, d, Measure::Worst)).n;
        let _ = write!(md, "| {x} | {n} |");
        for (m, _) in MEASURES {
            let s = paired(&scores(recs, awt, d, m), &scores(recs, x, d, m));
            let _ = write!(md, " {} | {} |", s.pct_ci(), if s.n == 0 { "—".into() } else { reading(&s, x) });
        }
        md += "\n";
    }
    md + "\n"
}

#[cfg(test)]
mod tests {
    use super::super::tests::rec;
    use super::*;

    /// Made-up seeds: AWT 2 points above random at every seed (AWT higher), level with SynFlow give
    /// or take noise (no difference shown), a secondary variant at one seed (no interval); the
    /// dense net counted at density 1; each variant's level with its interval.
    #[test]
    fn every_variant_gets_its_level_and_its_difference_to_awt() {
        let mut recs = Vec::new();
        for seed in 0..3u64 {
            let j = 0.003 * seed as f64;
            recs.push(rec("dense", 1.0, seed, (0.85, 0.62, 0.60 + j), 1000, Vec::new()));
            recs.push(rec("awt", 0.05, seed, (0.80, 0.60, 0.58 + j), 1000, Vec::new()));
            recs.push(rec("random", 0.05, seed, (0.78, 0.58, 0.56 + j), 1000, Vec::new()));
            recs.push(rec(
                "synflow",
                0.05,
                seed,
                (0.80, 0.60, 0.58 + [0.004, -0.004, 0.001][seed as usize]),
                1000,
                Vec::new(),
            ));
        }
        recs.push(rec("grasp", 0.05, 0, (0.7, 0.5, 0.5), 1000, Vec::new()));
        recs.push(rec("awt", 0.02, 0, (0.7, 0.5, 0.5), 1000, Vec::new()));
        let md = levels(&recs, 0.05, Some(1000));
        assert!(
            md.contains("| variant | seeds | worst case | AutoAttack (first 1000) | Square alone | clean |"),
            "{md}"
        );
        // Square alone: what AutoAttack's Square broke after its gradient attacks (2 of 1000 here).
        assert!(md.contains("| dense | 3 | 60.3 [") && md.contains("| 0.2 [0.2, 0.2] | 85.0 [85.0, 85.0] |"), "{md}");
        assert!(
            md.contains("| grasp | 1 | 50.0 (one seed) | 49.5 (one seed) | 0.2 (one seed) | 70.0 (one seed) |"),
            "{md}"
        );
        assert!(md.contains("| dense | 3 | 60.3 ["), "{md}");
        assert!(md.contains("| grasp | 1 | 50.0 (one seed) |"), "{md}");
        let app = versus_awt(&recs, 0.05, "awt");
        let row = |x: &str| app.lines().find(|l| l.starts_with(&format!("| {x} |"))).unwrap_or_else(|| panic!("{app}"));
        assert!(row("random").starts_with("| random | 3 | +2.0 [+2.0, +2.0] | AWT higher |"), "{app}");
        assert!(row("synflow").contains("| no difference shown |"), "{app}");
        assert!(row("grasp").starts_with("| grasp | 1 | +8.0 (one seed) | no interval |"), "{app}");
        assert!(row("dense").starts_with("| dense | 3 | -2.0 [-2.0, -2.0] | dense higher |"), "{app}");
        assert!(!app.contains("| awt |"), "{app}");
        assert!(versus_awt(&recs, 0.2, "awt").is_empty());
    }

    /// A row added after the comparison gets one summary line per cell, its reading unadjusted; none
    /// before it has a record, or where it has no seed paired with AWT.
    #[test]
    fn a_row_added_after_the_comparison_is_summarised_as_exploratory() {
        // The study's first two rows (NTK-SAP and its shuffle), and a made-up third.
        assert_eq!((MLP_ADDED[0].variant, MLP_ADDED[1].variant), ("ntk-sap-global", "ntk-sap-global-shuffled"));
        let rows = [
            MLP_ADDED[0],
            MLP_ADDED[1],
            Added {
                variant: "awt-layers",
                label: "AWT at its layers",
                read: &[Versus::Minus("ntk-sap-global", "NTK-SAP"), Versus::Minus("awt", "AWT")],
            },
        ];
        // Seeds 0..n of a variant at density d, the worst case `worst` + 0.3 points per seed.
        let seeds = |recs: &mut Vec<Rec>, v: &str, d: f64, n: u64, (clean, aa, worst): (f64, f64, f64)| {
            for seed in 0..n {
                recs.push(rec(v, d, seed, (clean, aa, worst + 0.003 * seed as f64), 1000, Vec::new()));
            }
        };
        let mut recs = Vec::new();
        seeds(&mut recs, "awt", 0.05, 3, (0.80, 0.60, 0.58));
        seeds(&mut recs, "dense", 1.0, 3, (0.85, 0.62, 0.60));
        assert_eq!(added(&recs, "LeNet-300-100", 0.05, "awt", &rows), "");
        seeds(&mut recs, "ntk-sap-global", 0.05, 3, (0.81, 0.61, 0.59));
        recs.push(rec("ntk-sap-global", 0.02, 7, (0.7, 0.5, 0.5), 1000, Vec::new()));
        let line = added(&recs, "LeNet-300-100", 0.05, "awt", &rows);
        assert!(
            line.starts_with(
                "- **LeNet-300-100, density 0.05**:\n  - AWT − NTK-SAP on the worst case -1.0 [-1.0, -1.0] over 3 paired seeds: NTK-SAP higher; on AutoAttack -1.0 [-1.0, -1.0]: NTK-SAP higher; NTK-SAP − dense on the worst case -1.0 [-1.0, -1.0]: dense higher (NTK-SAP's worst case 59.3 ["
            ),
            "{line}"
        );
        assert_eq!(added(&recs, "LeNet-300-100", 0.02, "awt", &rows), "", "no AWT seed to pair with");
        // The control, read against the row it controls (NTK-SAP 1 point above it at every seed).
        seeds(&mut recs, "ntk-sap-global-shuffled", 0.05, 3, (0.81, 0.61, 0.58));
        let line = added(&recs, "LeNet-300-100", 0.05, "awt", &rows);
        assert!(
            line.contains(
                ";\n  - NTK-SAP − NTK-SAP shuffled on the worst case +1.0 [+1.0, +1.0] over 3 paired seeds: NTK-SAP higher; on AutoAttack +1.0 [+1.0, +1.0]: NTK-SAP higher (NTK-SAP shuffled's worst case 58.3 ["
            ),
            "{line}"
        );
        // One seed: its value, no interval, no count of seeds.
        recs.push(rec("awt-layers", 0.02, 0, (0.81, 0.61, 0.585), 1000, Vec::new()));
        recs.push(rec("ntk-sap-global", 0.02, 0, (0.81, 0.61, 0.59), 1000, Vec::new()));
        recs.push(rec("awt", 0.02, 0, (0.81, 0.61, 0.58), 1000, Vec::new()));
        let one = added(&recs, "LeNet-300-100", 0.02, "awt", &rows);
        assert!(
            one.contains("  - AWT at its layers − NTK-SAP on the worst case -0.5 (one seed): no interval;"),
            "{one}"
        );
        // A row read as X − Y against two variants, at the seeds it pairs with each: 0.5 points
        // below NTK-SAP and above AWT at two seeds.
        seeds(&mut recs, "awt-layers", 0.05, 2, (0.81, 0.61, 0.585));
        let line = added(&recs, "LeNet-300-100", 0.05, "awt", &rows);
        assert!(
            line.ends_with(
                ";\n  - AWT at its layers − NTK-SAP on the worst case -0.5 [-0.5, -0.5] over 2 paired seeds: NTK-SAP higher; on AutoAttack -0.5 [-0.5, -0.5]: NTK-SAP higher; AWT at its layers − AWT on the worst case +0.5 [+0.5, +0.5] over 2 paired seeds: AWT at its layers higher; on AutoAttack +0.5 [+0.5, +0.5]: AWT at its layers higher (AWT at its layers' worst case 58.7 [56.7, 60.6] %)\n"
            ),
            "{line}"
        );
    }

    /// The added rows' differences as a forest plot: each once, in the summary's order, coloured by
    /// what it compares; nothing is drawn before a difference has a paired seed.
    #[test]
    fn the_added_rows_differences_are_drawn_once_each() {
        let rows = [MLP_ADDED[0], MLP_ADDED[1], MLP_ADDED[1]];
        let dir = super::super::tests::tempfile_dir();
        let mut recs = vec![rec("awt", 0.05, 0, (0.8, 0.6, 0.58), 1000, Vec::new())];
        assert_eq!(added_figure(&recs, 0.05, "awt", &rows, &dir, "a.svg").unwrap(), "");
        assert!(!dir.join("a.svg").exists());
        for seed in 0..2 {
            recs.push(rec("awt", 0.05, seed + 1, (0.8, 0.6, 0.58), 1000, Vec::new()));
            recs.push(rec("dense", 1.0, seed, (0.85, 0.62, 0.60), 1000, Vec::new()));
            recs.push(rec("ntk-sap-global", 0.05, seed, (0.81, 0.61, 0.59), 1000, Vec::new()));
            recs.push(rec("ntk-sap-global-shuffled", 0.05, seed, (0.81, 0.61, 0.585), 1000, Vec::new()));
        }
        let md = added_figure(&recs, 0.05, "awt", &rows, &dir, "a.svg").unwrap();
        assert!(md.starts_with("![") && md.contains("(figures/a.svg)"), "{md}");
        let svg = std::fs::read_to_string(dir.join("a.svg")).unwrap();
        for l in ["AWT − NTK-SAP (2 seeds)", "NTK-SAP − dense (2 seeds)", "NTK-SAP − NTK-SAP shuffled (2 seeds)"]
        {
            assert!(svg.contains(&format!("\n{l}\n")), "no {l}");
        }
        assert_eq!(svg.matches("NTK-SAP − NTK-SAP shuffled").count(), 1, "a row read twice is drawn once");
        let groups =
            [("NTK-SAP", "dense"), ("NTK-SAP", "NTK-SAP shuffled"), ("AWT", "NTK-SAP"), ("random ERK", "random")];
        assert_eq!(groups.map(|(a, b)| read_group(a, b)), [0, 1, 2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two seeds far apart: the t-interval (12.7 · sd / √2 each side) runs past 100 % and below 0,
    /// and is shown cut to the range a rate can take; the mean is untouched.
    #[test]
    fn a_levels_interval_is_cut_to_the_range_of_a_rate() {
        assert_eq!(level(&summary(&[0.78, 0.83])), "80.5 [48.7, 100.0]");
        assert_eq!(level(&summary(&[0.001, 0.02])), "1.1 [0.0, 13.1]");
        assert_eq!(level(&summary(&[0.60, 0.62])), "61.0 [48.3, 73.7]");
    }
}
