//! Tests of the parent module.

use super::data::{DynLine, MaskRecord, SearchLine, TrainLine};
use super::*;

/// A recorded run made up for the report: `clean`, `pgd` and `worst` accuracies on 10,000
/// images, AutoAttack on the first `aa_n`, and `dynamics` per epoch.
pub(super) fn rec(
    method: &str,
    density: f64,
    seed: u64,
    acc: (f64, f64, f64),
    aa_n: u64,
    dynamics: Vec<DynLine>,
) -> Rec {
    let m = crate::records::test_manifest("study", method, density, seed, acc);
    let (robust, first) = ((acc.2 * aa_n as f64) as u64 - 5, (acc.2 * aa_n as f64) as u64 + 5);
    let aa = serde_json::json!({
        "arch": "lenet-300-100", "model": "", "offset": 0, "wall_seconds": 1.0, "split": "test",
        "data": "fashion-mnist", "n": aa_n, "clean_correct": aa_n, "clean_accuracy": 1.0,
        "robust_correct": robust, "robust_accuracy": robust as f64 / aa_n as f64,
        "cumulative": [{"attack": "apgd-ce", "robust_correct": first, "robust_accuracy": first as f64 / aa_n as f64}],
        "gradient_free_only": 2,
        "settings": {"attack": "autoattack", "eps": 0.1, "steps": 20, "apgd_steps": 100, "batch": 250, "loss": "ce",
                     "noise_samples": 4, "norm": "linf", "restarts": 1, "seed": seed, "step_size": 0.0125},
        "dataset_location": "", "dataset_files": [], "git_commit": "0",
    });
    Rec {
        m: serde_json::from_value(m).unwrap(),
        aa: Some(serde_json::from_value(aa).unwrap()),
        mask: None,
        search: Vec::new(),
        dynamics,
        train: Vec::new(),
    }
}

/// A training-metrics line with this loss (the other numbers do not matter here).
fn train_line(train_loss: f64) -> TrainLine {
    TrainLine {
        epoch: 0,
        train_loss,
        train_acc: 0.5,
        clean_acc: 0.5,
        robust_acc: 0.4,
        lr: 1e-3,
        images_per_sec: 1.0,
        seconds: 1.0,
        extra: Default::default(),
    }
}

pub(super) fn dyn_line(epoch: u64, d: f64) -> DynLine {
    DynLine {
        epoch,
        rel_distance: d,
        alignment: 1.0 - d / 2.0,
        sparse_change: 0.1 * epoch as f64 + 0.01,
        dense_change: 0.2 * epoch as f64 + 0.01,
        loss_gap: (epoch > 0).then_some(d / 10.0),
    }
}

/// Three seeds where AWT sits 5 points above random and 2 below dense: the verdicts follow the
/// intervals, AutoAttack on a subset is labelled and not the headline, and every figure is written
/// with its error bars and seed bands.
#[test]
fn the_study_section_decides_from_intervals_and_draws_its_figures() {
    let mut recs = Vec::new();
    for seed in 0..3u64 {
        let j = 0.002 * seed as f64;
        let dy = |base: f64| (0..4).map(|e| dyn_line(e, base + 0.01 * e as f64 + j)).collect::<Vec<_>>();
        recs.push(rec("dense", 1.0, seed, (0.85, 0.62 + j, 0.60 + j), 1000, Vec::new()));
        recs.push(rec("awt", 0.05, seed, (0.80, 0.60 + j, 0.58 + j), 1000, dy(0.3)));
        recs.push(rec("random", 0.05, seed, (0.78, 0.55 + 2.0 * j, 0.53 + 2.0 * j), 1000, dy(0.5)));
    }
    // Random seed 2's training stalled near chance; the others learned.
    for r in recs.iter_mut() {
        let last = if r.m.method == awt_runs::Method::Random && r.m.seed == 2 { 2.25 } else { 1.0 };
        r.train = vec![train_line(2.3), train_line(last)];
    }
    // Dense seed 0 has every step's time; the others were resumed before timings carried over.
    recs[0].m.timings_seconds.insert("init".into(), 1.0);
    recs[0].m.wall_seconds = 600.0;
    let dir = tempfile_dir();
    let (md, appendix) = study_section(&recs, &dir).unwrap();
    let md = md + &appendix;
    assert!(md.contains("| dense | 3 | 10.0 |"), "the median must come from the complete run:\n{md}");
    assert!(md.contains("8 runs (lenet-300-100-awt-d0.05-s0, "), "{md}");
    assert!(md.contains("worst case of PGD-20, APGD-CE, APGD-DLR"), "AA on a subset became the headline:\n{md}");
    assert!(md.contains("| AutoAttack (first 1000) | runs with a class cut off |"), "{md}");
    assert!(md.contains("| AWT − random | 3 | +4.8 [+4.3, +5.3] |"), "{md}");
    assert!(md.contains("| runs with a class cut off | runs whose training stalled |"), "{md}");
    // These made-up records carry no run's configuration hash, so none counts as a run of the grid.
    assert!(md.contains("**Progress:** 0 of the "), "{md}");
    assert!(md.lines().any(|l| l.starts_with("| random | 3 |") && l.ends_with("| — | 1 of 3 |")), "{md}");
    assert!(md.lines().any(|l| l.starts_with("| awt | 3 |") && l.ends_with("| 0 of 3 |")), "{md}");
    assert!(md.contains("**Stalled training.** random s2 (final training loss 2.25) ended its training"), "{md}");
    assert!(md.contains("the `-rescaled` ablations (the same masks, each unit's kept weights scaled back to its dense norm) test that."), "{md}");
    let line = |needle: &str| md.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}`:\n{md}"));
    assert!(line("AWT − random | 3").ends_with("| holds |"), "{md}");
    assert!(line("matches the dense net").contains("does **not** hold"), "{md}");
    assert!(line("NTK dynamics").contains("| holds |"), "{md}");
    assert!(
        line("(mean kernel alignment").contains("AWT − random +0.100 [") && line("alignment").ends_with("| holds |"),
        "{md}"
    );
    assert!(line("training-loss gap").ends_with("| holds |"), "{md}");
    assert_tables_well_formed(&md);
    // Kernel distance to the dense net at initialisation, after epoch 1 and at the end.
    assert!(md.contains("| awt | 3 | 0.302 ± 0.002 | 0.312 ± 0.002 | 0.332 ± 0.002 |"), "dynamics table:\n{md}");
    assert!(md.contains("\n## 3. Dynamics") && md.contains("\n## 4. Compute\n"), "{md}");
    // AutoAttack's later attacks take 10 of 1000 beyond APGD-CE in every run, Square alone 2.
    assert!(md.lines().any(|l| l.starts_with("| awt | 0.05 | 3 |") && l.ends_with("| -1.0 | 0.2 |")), "{md}");
    assert!(
        md.contains("Over 9 runs the later attacks take 1.0 points on average beyond APGD-CE (at most 1.0); Square alone broke points in 9 of 9 runs."),
        "{md}"
    );
    // Beyond the paper: AWT (2 points under dense, tight) and random both below −1 point by their whole interval.
    assert!(line("| awt | yes | 3 | -2.0 [").ends_with("| no: the upper bound is below −1 point |"), "{md}");
    assert!(line("| random | baseline | 3 |").ends_with("| no: the upper bound is below −1 point |"), "{md}");
    assert!(
        md.contains("**Finding.** No AWT variant matches the dense net's robust accuracy at density 0.05: awt (-2.0 ["),
        "{md}"
    );
    assert!(md.contains("]) falls below −1 point by the whole interval, so there is no new named method."), "{md}");
    assert!(!md.contains("### AWT ablations"), "no ablation recorded, no table:\n{md}");
    assert!(md.contains("| awt | 3 | 0.0 | — | — | — | 0.00 |"), "compute table: {md}");
    let svg = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    assert!(svg("study-robust-vs-density.svg").contains("awt"));
    // `reproduce --commit` commits the figures by these prefixes: a figure named otherwise would be left out.
    for f in std::fs::read_dir(&dir).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".svg") {
            assert!(super::FIGURE_PREFIXES.iter().any(|p| name.starts_with(p)), "{name}: no prefix of FIGURE_PREFIXES");
        }
    }
    for f in ["study-dyn-distance.svg", "study-dyn-alignment.svg", "study-dyn-own-change.svg", "study-dyn-loss-gap.svg"]
    {
        assert!(svg(f).contains("<polygon"), "{f}: no band over seeds");
        assert!(md.contains(&format!("(figures/{f})")), "{f} not linked");
    }
    assert!(svg("study-dyn-own-change.svg").contains("\ndense\n"), "the dense net's own change is missing");
    // Each ticket against the dense net, drawn with its interval.
    assert!(md.contains("(figures/study-vs-dense-d0.05.svg)"), "{md}");
    let forest = svg("study-vs-dense-d0.05.svg");
    assert!(forest.contains("\nawt (3 seeds)\n") && forest.contains("\nrandom (3 seeds)\n"), "{forest}");
    assert!(!forest.contains("\ndense (3 seeds)\n"), "the dense net against itself");
    // The same verdicts at a glance, a column per density.
    let glance = at_a_glance(&[], &recs).unwrap();
    assert!(glance.contains("| the paper's claim | density 0.05 |\n|---|---|\n"), "{glance}");
    assert!(
        glance.contains("**The paper's claims in the first study** (§2, from 0 of the "),
        "made-up records are no planned run: {glance}"
    );
    let row = glance.lines().find(|l| l.starts_with("| an AWT ticket matches")).unwrap_or_else(|| panic!("{glance}"));
    assert!(row.contains("| AWT − dense -2.0 [") && row.ends_with("] → does **not** hold |"), "{row}");
    let row = glance.lines().find(|l| l.starts_with("| AWT beats pruning at initialisation and NTT |")).unwrap();
    assert!(row.contains("AWT − random +") && row.ends_with("→ holds |"), "{row}");
    assert!(
        glance.contains(
            "**Beyond the paper** (does an AWT variant match the dense net at density 0.05?): No AWT variant matches"
        ),
        "{glance}"
    );
    assert_tables_well_formed(&glance);
    assert!(at_a_glance(&[], &[]).unwrap().contains("no run recorded yet"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ablations are compared with plain AWT (and the one above it at seed 0 is marked for seeds 1 and
/// 2); a variant that matches the dense net (lower bound at or above −1 point) is named as the
/// candidate; the search curves are drawn with a band over seeds.
#[test]
fn ablations_and_the_named_method_check_follow_the_records() {
    let mut recs = Vec::new();
    let line = |v: f64| SearchLine {
        step: 0,
        kernel_distance: v,
        output_distance: v,
        mask_changes: 0,
        loss: 0.0,
        kernel_term: 2000.0,
        output_term: 1.0,
        l2_term: 0.0,
    };
    for seed in 0..3u64 {
        let j = 0.004 * seed as f64;
        recs.push(rec("dense", 1.0, seed, (0.85, 0.62, 0.60 + j), 1000, Vec::new()));
        let mut awt = rec("awt", 0.05, seed, (0.80, 0.58, 0.55 + j), 1000, Vec::new());
        // Seed 1's search ends with its logits far from the teacher's.
        let out = if seed == 1 { 1.5 } else { 0.3 };
        awt.search = vec![
            line(0.99),
            SearchLine { step: 100, ..line(0.3) },
            SearchLine { step: 200, output_distance: out, ..line(0.4 + j) },
        ];
        recs.push(awt);
        // Close to dense, seeds on both sides, a tight interval: its lower bound is above −1 point.
        let wobble = [0.003, -0.001, 0.001][seed as usize];
        recs.push(rec("awt-wide", 0.05, seed, (0.84, 0.61, 0.60 + j + wobble), 1000, Vec::new()));
        // A baseline that matches the dense net is reported, but it is no new method.
        recs.push(rec("imp-at", 0.05, seed, (0.85, 0.62, 0.61 + j - wobble), 1000, Vec::new()));
    }
    recs.push(rec("awt-ker10", 0.05, 0, (0.80, 0.59, 0.57), 1000, Vec::new()));
    recs.push(rec("ntt", 0.05, 0, (0.78, 0.58, 0.56), 1000, Vec::new()));
    recs.push(rec("ntt-ker1e-3", 0.05, 0, (0.79, 0.60, 0.58), 1000, Vec::new()));
    recs.push(rec("awt-steps400", 0.05, 0, (0.80, 0.57, 0.54), 1000, Vec::new()));
    // Random's mask stalled at 0.02; the same mask rescaled trained.
    let trained = |mut r: Rec, last: f64| {
        r.train = vec![train_line(2.3), train_line(last)];
        r
    };
    recs.push(trained(rec("random", 0.02, 0, (0.20, 0.15, 0.14), 1000, Vec::new()), 2.26));
    recs.push(trained(rec("random-rescaled", 0.02, 0, (0.50, 0.40, 0.38), 1000, Vec::new()), 1.2));
    recs.push(rec("random", 0.05, 0, (0.70, 0.57, 0.56), 1000, Vec::new()));
    recs.push(rec("random-rescaled", 0.05, 0, (0.72, 0.59, 0.58), 1000, Vec::new()));
    let dir = tempfile_dir();
    let (md, appendix) = study_section(&recs, &dir).unwrap();
    let md = md + &appendix;
    let line = |needle: &str| md.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}`:\n{md}"));
    assert!(md.contains("### AWT ablations (density 0.05)"), "{md}");
    assert!(
        line("| awt-ker10 | --lambda-ker 10.0 |")
            .contains("| 1 | 80.0 | 59.0 | 57.0 | +2.0 (one seed) | above plain AWT: seeds 1 and 2 follow |"),
        "{md}"
    );
    assert!(
        line("| awt-steps400 | --steps 400 |").ends_with("| -1.0 (one seed) | not above plain AWT: not followed up |"),
        "{md}"
    );
    assert!(
        line("| awt-ker10 | yes | 1 | -3.0 (one seed) |").ends_with("| open: fewer than two paired seeds |"),
        "{md}"
    );
    // An ablation below its plain method at its first seed is no open question anywhere.
    assert!(
        line("| AWT − awt-steps400 | 1 |")
            .ends_with("| none: awt-steps400 was not above plain AWT at its first seed, so not run at more |"),
        "{md}"
    );
    assert!(
        line("| awt-steps400 | yes | 1 |")
            .ends_with("| no: not above plain AWT at its first seed, so not run at more |"),
        "{md}"
    );
    assert!(
        line("| awt-wide | yes | 3 | +0.1 [").ends_with("| **yes**: the lower bound is at or above −1 point |"),
        "{md}"
    );
    assert!(
        line("| imp-at | baseline | 3 |").ends_with("| **yes**: the lower bound is at or above −1 point |"),
        "{md}"
    );
    assert!(
        md.contains("**Finding.** awt-wide matches the dense net's robust accuracy at density 0.05 (lower bound at or above −1 point) — the candidate for a named method. Of the baselines, imp-at matches it too"),
        "{md}"
    );
    // NTT's variants are compared with plain NTT, in their own table.
    assert!(md.contains("### NTT ablations (density 0.05)"), "{md}");
    assert!(
        line("| ntt-ker1e-3 | --lambda-ker 0.001 |")
            .ends_with("| +2.0 (one seed) | above plain NTT: seeds 1 and 2 follow |"),
        "{md}"
    );
    // A mask's variant is compared with the plain mask of its method.
    assert!(
        md.contains(
            "### random ablations (density 0.02)\n\nEach variant changes one setting of plain random's pruning;"
        ),
        "{md}"
    );
    assert!(line("| random (plain) | the study's `[prune]` | 1 | 20.0 | 15.0 | 14.0 |").ends_with("| — | — |"), "{md}");
    assert!(
        line("| random-rescaled | --rescale unit-norm | 1 | 50.0 |")
            .ends_with("| +24.0 (one seed) | above plain random: seeds 1 and 2 follow |"),
        "{md}"
    );
    assert!(
        md.contains("the `-rescaled` ablations test that (the same masks, each unit's kept weights scaled back to its dense norm): \
random-rescaled s0 trained (final training loss 1.20; robust accuracy 38.0 % against 14.0 %)."),
        "{md}"
    );
    assert!(md.contains("| awt | 0.05 | 1 | 0.990 → 0.300 (100) → 0.404 | 0.990 → 1.500 | 2000 | 0 |"), "{md}");
    assert!(md.contains("In 1 of 3 searches (awt d0.05 s1) the last step's output distance is above 1"), "{md}");
    // A variant recorded at two densities is drawn beside its plain method, not among the methods.
    let variants = std::fs::read_to_string(dir.join("study-variants-vs-density.svg")).unwrap();
    assert!(variants.contains("\nrandom-rescaled\n") && variants.contains("\nrandom\n"), "{variants}");
    assert!(!variants.contains("\nawt-ker10\n"), "a one-density variant is no line");
    let main = std::fs::read_to_string(dir.join("study-robust-vs-density.svg")).unwrap();
    assert!(!main.contains("random-rescaled") && main.contains("\nrandom\n"), "{main}");
    assert!(md.contains("(figures/study-variants-vs-density.svg)"), "{md}");
    let svg = std::fs::read_to_string(dir.join("study-search.svg")).unwrap();
    assert!(svg.contains("awt d0.05") && svg.contains("<polygon"), "search curves without their band");
    assert!(md.contains("(figures/study-search.svg)"), "{md}");
    assert_tables_well_formed(&md);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The NTT validation notes which tickets cut a class off and what it cost, from `mask.json`.
#[test]
fn the_ntt_section_reports_cut_off_classes() {
    let mut recs = Vec::new();
    for seed in 0..2u64 {
        recs.push(rec("dense", 1.0, seed, (0.89, 0.0, 0.0), 1000, Vec::new()));
        for (m, acc) in [("random", 0.85), ("ntt", 0.87)] {
            let cut = m == "random" && seed == 0;
            let mut r = rec(m, 0.03, seed, (if cut { 0.76 } else { acc }, 0.0, 0.0), 1000, Vec::new());
            r.mask = Some(MaskRecord {
                classes_without_input: Some(if cut { vec![1] } else { vec![] }),
                ..Default::default()
            });
            recs.push(r);
        }
    }
    let dir = tempfile_dir();
    let md = ntt_section(&recs, &dir).unwrap();
    assert!(md.contains("| random | 2 | s0 76.00 (class 1 cut off), s1 85.00 |"), "{md}");
    assert!(md.contains("1 of 4 tickets (random s0)"), "{md}");
    assert!(md.contains("76.0 % against 85.0 % for the other non-NTT tickets"), "{md}");
    assert!(md.contains("cut a class off in 0 of 2"), "{md}");
    assert_tables_well_formed(&md);
    assert!(md.contains("NTT is above random in 2 of 2 seeds (every seed by chance alone, if neither were better: probability 0.250)"), "{md}");
    // Without the seed whose random ticket cuts a class off, one pair is left: 87 − 85.
    assert!(md.contains("| ntt − random, seeds where both keep every class | 1 | +2.0 (one seed) |"), "{md}");
    let glance = at_a_glance(&recs, &[]).unwrap();
    assert!(glance.contains("(§1; clean accuracy, natural training, density 0.03): NTT − random is "), "{glance}");
    assert!(
        md.contains("|\n\n| comparison (clean accuracy)") || md.contains(".\n\n| comparison (clean accuracy)"),
        "{md}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With one AWT variant decided short of the dense net, one not yet at three seeds and one that
/// earned no more seeds, the finding names the first with its interval and counts only the second.
#[test]
fn the_named_method_finding_names_who_falls_short_while_others_wait() {
    let mut recs = Vec::new();
    for seed in 0..3u64 {
        let j = 0.002 * seed as f64;
        recs.push(rec("dense", 1.0, seed, (0.85, 0.62, 0.60 + j), 1000, Vec::new()));
        recs.push(rec("awt", 0.05, seed, (0.80, 0.60, 0.58 + j), 1000, Vec::new()));
    }
    recs.push(rec("awt-ker10", 0.05, 0, (0.80, 0.60, 0.59), 1000, Vec::new()));
    // Below plain AWT at its first seed: never followed up, so out of the running rather than open.
    recs.push(rec("awt-steps400", 0.05, 0, (0.80, 0.60, 0.57), 1000, Vec::new()));
    let vs = variants(&recs);
    let md = beyond::named_method(&recs, &vs, Measure::Worst).unwrap();
    assert!(
        md.contains("| awt-steps400 | yes | 1 | -3.0 (one seed) | no: not above plain AWT at its first seed, so not run at more |"),
        "{md}"
    );
    let (_, finding) = beyond::named_method_parts(&recs, &vs, Measure::Worst).unwrap().unwrap();
    assert!(
        finding.starts_with("**Finding.** No AWT variant is shown to match the dense net at density 0.05: awt (-2.0 [-2.0, -2.0]) does not match; 1 AWT variant is open (the interval straddles −1 point, or fewer than two seeds)."),
        "{finding}"
    );
    // Without the variant still waiting, it is decided.
    recs.retain(|r| r.variant() != "awt-ker10");
    let (_, finding) = beyond::named_method_parts(&recs, &variants(&recs), Measure::Worst).unwrap().unwrap();
    assert!(
        finding.starts_with("**Finding.** No AWT variant matches the dense net's robust accuracy at density 0.05: awt (-2.0 [-2.0, -2.0]) \
falls below −1 point by the whole interval; awt-steps400 was not above plain AWT at the first seed, so there is no new named method."),
        "{finding}"
    );
}

/// A searched ticket that stalls is named without the weight-scale explanation, which fits only
/// masks kept at their initial weights.
#[test]
fn a_stalled_search_gets_no_mask_scale_explanation() {
    let mut r = rec("awt", 0.02, 1, (0.17, 0.13, 0.128), 1000, Vec::new());
    r.train = vec![train_line(2.3), train_line(2.21)];
    let md = stalled_finding(&[r], 0.02);
    assert!(md.contains("awt s1 (final training loss 2.21) ended its training"), "{md}");
    assert!(md.ends_with("failed training more than a mask.\n") && !md.contains("likely cause"), "{md}");
}

/// The time left is each run's variant's median over its complete runs, else its plain method's, else
/// every complete run's; runs missing a sitting's timings do not count, nor, once pause-free records
/// exist, the records that may count pauses.
#[test]
fn the_time_left_comes_from_the_medians_of_complete_runs() {
    let timed = |method: &str, seed: u64, wall: f64, complete: bool| {
        let mut r = rec(method, 0.05, seed, (0.8, 0.6, 0.6), 1000, Vec::new());
        if complete {
            r.m.timings_seconds.insert("init".into(), 1.0);
        }
        r.m.wall_seconds = wall;
        r
    };
    let recs = vec![
        timed("awt", 0, 1800.0, true),
        timed("awt", 1, 3600.0, true),
        timed("awt", 2, 7200.0, true),
        timed("random", 0, 360.0, true),
        timed("random", 1, 99_999.0, false),
    ];
    let left = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let h = |v: &[&str]| compute::hours_left(&recs, &left(v)).unwrap();
    assert!((h(&["awt"]) - 1.0).abs() < 1e-12, "awt's median is 3600 s");
    assert!((h(&["random"]) - 0.1).abs() < 1e-12, "the incomplete random run is left out");
    assert!((h(&["awt-ker1e-3"]) - 1.0).abs() < 1e-12, "a variant with no record takes its plain method's");
    // No record of the method either: the median of all four complete runs, (1800 + 3600) / 2.
    assert!((h(&["snip"]) - 0.75).abs() < 1e-12);
    assert!((h(&["awt", "random", "snip"]) - 1.85).abs() < 1e-12);
    assert!(compute::hours_left(&recs, &[]).is_none());
    assert!(compute::hours_left(&recs[4..], &left(&["awt"])).is_none(), "nothing complete: no estimate");
    // Once a record says it left its pauses out, the estimates go by such records alone: awt's
    // older times may hold a paused grid's hours.
    let mut recs = recs;
    recs.push(timed("awt", 3, 900.0, true));
    recs[5].m.stopped_seconds = Some(0.0);
    let h = |v: &[&str]| compute::hours_left(&recs, &left(v)).unwrap();
    assert!((h(&["awt"]) - 0.25).abs() < 1e-12, "awt: the pause-free run's 900 s");
    assert!((h(&["random", "snip"]) - 0.5).abs() < 1e-12, "no pause-free random run: every pause-free run's");
}

/// Every markdown table has as many cells in each row as in its header (a stray `|` in a cell
/// would shift the columns).
fn assert_tables_well_formed(md: &str) {
    let mut width = None;
    for l in md.lines() {
        if !l.starts_with('|') {
            width = None;
            continue;
        }
        let n = l.matches('|').count();
        match width {
            None => width = Some(n),
            Some(w) => assert_eq!(n, w, "a table row with another number of cells: {l}"),
        }
    }
}

pub(super) fn tempfile_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("awt-study-test-{}-{k}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The budget note follows the spec and names only the train → prune methods recorded: HYDRA's
/// fine-tuned weights see its pretraining and the common training together.
#[test]
fn the_training_budgets_come_from_the_spec() {
    let spec = crate::spec::load("study").unwrap();
    let (h, i, t) = (spec.hydra.clone().unwrap(), spec.imp.clone().unwrap(), spec.train.clone());
    let awt = rec("awt", 0.05, 0, (0.8, 0.6, 0.58), 1000, Vec::new());
    assert_eq!(claims::budgets(&spec, std::slice::from_ref(&awt)), "", "neither recorded, no note");
    let recs = [awt, rec("hydra", 0.05, 0, (0.8, 0.6, 0.6), 1000, Vec::new())];
    let md = claims::budgets(&spec, &recs);
    assert!(md.contains(&format!("same {} epochs of PGD-{} adversarial training", t.epochs, t.steps)), "{md}");
    assert!(
        md.contains(&format!(
            "its weights see {} epochs of adversarial training against {} for every other ticket",
            h.pretrain_epochs + t.epochs,
            t.epochs
        )),
        "{md}"
    );
    assert!(!md.contains("IMP-AT"), "IMP-AT not recorded: {md}");
    let recs = [rec("imp-at", 0.05, 0, (0.8, 0.6, 0.6), 1000, Vec::new())];
    let md = claims::budgets(&spec, &recs);
    assert!(
        md.contains(&format!("{} rounds of {} epochs", i.rounds, i.epochs)) && !md.contains("HYDRA starts"),
        "{md}"
    );
}

/// AWT against NTT at matched λ_ker 1e-3: equivalence and direction by the one rule.
#[test]
fn the_matched_comparison_reads_equivalence_and_direction() {
    let mut recs = Vec::new();
    for (seed, (a, n)) in [(0.600, 0.598), (0.602, 0.601), (0.598, 0.597)].into_iter().enumerate() {
        recs.push(rec("awt-ker1e-3", 0.05, seed as u64, (0.8, a, a), 1000, Vec::new()));
        recs.push(rec("ntt-ker1e-3", 0.05, seed as u64, (0.8, n, n), 1000, Vec::new()));
    }
    let g = matched_glance(&recs, Measure::Worst).unwrap();
    assert!(
        g.contains("density 0.05: AWT − NTT +0.1 [-0.0, +0.3] → equivalent within ±1 point, and neither shown better."),
        "{g}"
    );
    assert_eq!(matched_glance(&recs[..2], Measure::Worst).unwrap(), "", "one seed: no line");
}
