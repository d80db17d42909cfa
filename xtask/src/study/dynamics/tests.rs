//! Tests of the dynamics section on made-up records: its table, its summary and its figures.

use super::super::tests::{rec, tempfile_dir};
use super::*;

fn line(epoch: u64, distance: f64, gap: f64) -> DynLine {
    DynLine {
        epoch,
        rel_distance: distance,
        alignment: 1.0 - distance / 2.0,
        sparse_change: if epoch == 0 { 0.0 } else { 40.0 },
        dense_change: if epoch == 0 { 0.0 } else { 1.5 },
        loss_gap: (epoch > 0).then_some(gap),
    }
}

/// AWT starts 0.6 closer to the dense kernel than random but keeps a sixth of that lead after
/// an epoch: the table gives each measure at its epoch with the spread over seeds, the finding
/// says how much of the lead is left, and a ticket without dynamics gets no row.
#[test]
fn the_dynamics_section_follows_the_searched_match_through_training() {
    let mut recs = Vec::new();
    for seed in 0..2u64 {
        let j = 0.01 * seed as f64;
        let dy = |d: [f64; 3], g: [f64; 2]| vec![line(0, d[0] + j, 0.0), line(1, d[1], g[0]), line(2, d[2], g[1])];
        recs.push(rec("awt", 0.05, seed, (0.8, 0.6, 0.58), 1000, dy([0.4, 0.8, 0.7], [3.0, 0.3])));
        recs.push(rec("random", 0.05, seed, (0.8, 0.6, 0.57), 1000, dy([1.0, 0.9, 0.8], [0.5, 0.2])));
        recs.push(rec("snip", 0.05, seed, (0.8, 0.6, 0.57), 1000, Vec::new()));
    }
    let dir = tempfile_dir();
    let vs = ["awt", "random", "snip"].map(String::from);
    let probe = crate::spec::DynamicsSpec { probe: 64, steps: 10 };
    let md = section(&recs, &vs, &[0.05], Measure::Worst, Some(&probe), &dir).unwrap();
    assert!(md.contains("one fixed probe set: the first 64 test images and their PGD-10 examples against"), "{md}");
    let row = |t: &str| md.lines().find(|l| l.starts_with(&format!("| {t} |"))).unwrap_or_else(|| panic!("{md}"));
    assert_eq!(
        row("awt"),
        "| awt | 2 | 0.405 ± 0.007 | 0.800 ± 0.000 | 0.700 ± 0.000 | 0.750 ± 0.000 | 0.625 ± 0.000 | 40.0 ± 0.0 \
| 3.000 ± 0.000 | 0.300 ± 0.000 | 1.650 ± 0.000 |"
    );
    assert!(row("random").starts_with("| random | 2 | 1.005 ± 0.007 | 0.900 ± 0.000 |"), "{md}");
    assert!(!md.contains("| snip |"), "no dynamics recorded, no row:\n{md}");
    assert!(md.contains("has moved 1.500 ± 0.000 times its initial norm"), "{md}");
    assert!(
        md.contains(
            "AWT's kernel is 0.405 from the dense net's against 1.005 for a random ticket: the search matched the \
kernel, a lead of 0.600. After one epoch of adversarial training the distances are 0.800 and 0.900 (a lead of 0.100, 17 % \
of it left), and at the end 0.700 and 0.800 (17 % left). AWT's training loss is +3.00 from the dense net's in the first \
epoch (random's +0.50) and +0.30 in the last (random's +0.20)."
        ),
        "{md}"
    );
    for f in [
        "study-dyn-distance.svg",
        "study-dyn-alignment.svg",
        "study-dyn-own-change.svg",
        "study-dyn-loss-gap.svg",
        "study-dyn-vs-robust-init.svg",
        "study-dyn-vs-robust-mean.svg",
    ] {
        assert!(md.contains(&format!("(figures/{f})")), "{f} not linked:\n{md}");
        assert!(dir.join(f).exists(), "{f} not written");
    }
    // Nothing recorded: the section says so and draws nothing.
    let none: Vec<Rec> = recs.into_iter().filter(|r| r.dynamics.is_empty()).collect();
    let md = section(&none, &vs, &[0.05], Measure::Worst, None, &dir).unwrap();
    assert!(md.contains("No kernel dynamics recorded yet"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}
