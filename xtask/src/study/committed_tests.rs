//! The committed study reports against what the records give.

use super::tests::tempfile_dir;
use super::*;
use crate::workspace::root;

/// The committed docs/study.md and its figures are exactly what `cargo xtask report --study` writes
/// from the records in `results/` (issue 11: the report is regenerated from the records alone,
/// byte-identically, never edited by hand).
#[test]
fn the_committed_study_report_is_what_the_records_give() {
    let dir = tempfile_dir();
    write(&dir.join("study.md")).unwrap();
    let docs = root().join("docs");
    let same = |ours: &Path, committed: &Path| {
        let (a, b) = (std::fs::read_to_string(ours).unwrap(), std::fs::read_to_string(committed).unwrap_or_default());
        if a != b {
            let line =
                a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(a.lines().count().min(b.lines().count()));
            panic!(
                "{} differs from what the records give (first at line {}): run `cargo xtask report --study` and commit",
                committed.display(),
                line + 1
            );
        }
    };
    same(&dir.join("study.md"), &docs.join("study.md"));
    same(&dir.join("selection.md"), &docs.join("selection.md"));
    same(&dir.join("study-appendix.md"), &docs.join("study-appendix.md"));
    same(&dir.join(RUNS_CSV), &docs.join(RUNS_CSV));
    let mut figures = 0;
    for e in std::fs::read_dir(dir.join("figures")).unwrap() {
        let p = e.unwrap().path();
        same(&p, &docs.join("figures").join(p.file_name().unwrap()));
        figures += 1;
    }
    assert!(figures > 0, "the report drew no figure");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The protocol commit the reports cite added docs/protocol.md and is an ancestor of the first
/// commit that recorded a run of study v2; later commits only append to it (its deviations and
/// what its rules recorded), every line before its `## Deviations` staying as committed (where
/// the checkout has its history; a shallow clone has not and is said so).
#[test]
fn the_cited_protocol_commit_predates_every_study_v2_record() {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").arg("-C").arg(root()).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if git(&["rev-parse", "--is-shallow-repository"]).as_deref() != Some("false") {
        eprintln!("no full git history here: the protocol commit is not checked");
        return;
    }
    let cited = selection::PROTOCOL_COMMIT;
    let touching = git(&["log", "--format=%H", "--", "docs/protocol.md"]).unwrap();
    assert_eq!(touching.lines().last(), Some(cited), "the cited commit is not the one that added docs/protocol.md");
    let first_record =
        git(&["log", "--reverse", "--format=%H", "--", "results/select-mlp-budget", "results/select-mlp"])
            .unwrap()
            .lines()
            .next()
            .map(str::to_string)
            .expect("study v2 has records");
    assert!(
        git(&["merge-base", "--is-ancestor", cited, &first_record]).is_some(),
        "the protocol ({cited}) does not predate the first record ({first_record})"
    );
    assert_ne!(cited, first_record);
    let fixed = git(&["show", &format!("{cited}:docs/protocol.md")]).unwrap();
    let fixed = &fixed[..fixed.find("## Deviations").expect("the protocol has a deviations section")];
    let now = std::fs::read_to_string(root().join("docs/protocol.md")).unwrap();
    assert!(now.starts_with(fixed), "docs/protocol.md changed above its deviations since {cited}");
}

/// "Where it stands" against the records read independently: each stage's recorded count (those
/// under the plan's settings and those under other settings) is the number of run folders with a manifest, its run time the sum of their `wall_seconds`, and the
/// total under the table the sum of the rows.
#[test]
fn the_progress_table_adds_up_the_committed_records() {
    let md = v2_progress().unwrap();
    let mut total = 0.0;
    let mut rows = 0;
    for (_, preset) in V2_STAGES {
        let Some(row) = md.lines().find(|l| l.contains(&format!("| `{preset}` |"))) else { continue };
        let cells: Vec<&str> = row.split(" | ").collect();
        let (mut n, mut secs, mut on_cpus) = (0, 0.0, 0);
        if let Ok(dirs) = std::fs::read_dir(root().join("results").join(preset)) {
            for d in dirs {
                let m = d.unwrap().path().join("manifest.json");
                if let Ok(text) = std::fs::read_to_string(&m) {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    n += 1;
                    secs += v["wall_seconds"].as_f64().unwrap();
                    let cpu = v["cpu"].as_str().unwrap_or("not recorded");
                    assert!(cells[5].contains(&format!("{cpu} (")), "{preset}: {cpu} not in {row}");
                }
            }
        }
        if !cells[2].starts_with("plans once") {
            // The records counted under the plan's settings, and those under other settings.
            let current: usize = cells[2].split(" of ").next().unwrap().parse().unwrap();
            let other = cells[2].split_once(" (").map_or(0, |(_, o)| o.split(' ').next().unwrap().parse().unwrap());
            assert_eq!(current + other, n, "{preset}: {row}");
        }
        assert_eq!(cells[3], format!("{:.1}", secs / 3600.0 + 0.0), "{preset}: {row}");
        // The CPU column's counts add up to the recorded runs.
        for part in cells[5].trim_end_matches(" |").split("; ").filter(|p| *p != "—") {
            on_cpus += part.rsplit_once(" (").unwrap().1.trim_end_matches(')').parse::<usize>().unwrap();
        }
        assert_eq!(on_cpus, n, "{preset}: {row}");
        total += secs / 3600.0;
        rows += 1;
    }
    assert!(rows >= 4, "{md}");
    assert!(md.contains(&format!("Run time so far: {total:.1} h;")), "{md}");
}

/// The quick report's lines on what the study found are what `results/` gives now: a recorded run
/// that changes them must refresh them (`reproduce --commit` does), or `report --check` would fail.
#[test]
fn the_quick_report_carries_the_current_findings() {
    let committed = std::fs::read_to_string(root().join("docs/reproduction.md")).unwrap();
    assert!(
        committed.contains(&findings_block().unwrap()),
        "docs/reproduction.md's lines on what the study found are stale: run `cargo xtask report --study` and commit"
    );
}

/// `refresh_findings` replaces only the text between the markers, says whether it changed
/// anything, and leaves a report without markers alone.
#[test]
fn findings_are_refreshed_between_their_markers_only() {
    let dir = tempfile_dir();
    let doc = dir.join("reproduction.md");
    let (begin, end) = FINDINGS_MARKERS;
    std::fs::write(&doc, format!("# Quick\n\nintro\n\n{begin}\nstale lines\n\n{end}\n\n| table |\n")).unwrap();
    assert!(refresh_findings(&doc).unwrap());
    let now = std::fs::read_to_string(&doc).unwrap();
    assert_eq!(now, format!("# Quick\n\nintro\n\n{}| table |\n", findings_block().unwrap()));
    assert!(!refresh_findings(&doc).unwrap(), "already current: nothing written");
    let plain = dir.join("plain.md");
    std::fs::write(&plain, "# A report without markers\n").unwrap();
    assert!(!refresh_findings(&plain).unwrap());
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "# A report without markers\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `report --study --out` writes three companions beside its report (`study-appendix.md`,
/// `selection.md`, `study-runs.csv`) and a `figures/` folder; a user's file under a companion's name
/// is refused before anything is written.
#[test]
fn the_study_report_never_replaces_a_users_file_beside_it() {
    for companion in ["selection.md", RUNS_CSV] {
        let dir = tempfile_dir();
        std::fs::write(dir.join(companion), "my own notes\n").unwrap();
        let e = write(&dir.join("study.md")).unwrap_err().to_string();
        assert!(e.contains(companion) && e.contains("not a report"), "{e}");
        assert_eq!(std::fs::read_to_string(dir.join(companion)).unwrap(), "my own notes\n");
        assert!(!dir.join("study.md").exists() && !dir.join("figures").exists(), "written before the refusal");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The README's prose is written by hand, but every interval it quotes ("−0.7 [−2.3, +0.9]") must be
/// one the study's reports give now — as written, or as the same difference taken the other way
/// round — so a record that moves a number makes this fail until the README is brought up to date.
/// It looks each interval up anywhere in the reports: it catches a number that moved, not one quoted
/// under another row's name that happens to read the same.
#[test]
fn the_readme_quotes_only_intervals_the_reports_give() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let reports: String = ["study.md", "selection.md", "study-appendix.md"]
        .iter()
        .map(|f| std::fs::read_to_string(root().join("docs").join(f)).unwrap())
        .collect();
    assert!(!intervals(&readme).is_empty(), "the README quotes no interval: the check below would check nothing");
    let stale = unquoted_intervals(&readme, &reports);
    assert!(stale.is_empty(), "README.md quotes intervals docs/study.md does not give (any more): {stale:?}");
}

/// The check's reader: line breaks and the typographic minus sign aside, an interval quoted with
/// its sign flipped and its bounds swapped is the same difference; one the reports lack is named.
#[test]
fn an_interval_the_reports_lack_is_named() {
    let reports = "AWT − X on the worst case -2.1 [-4.0, -0.2] over 3 seeds; level 68.5 [67.8, 69.3] %";
    assert!(unquoted_intervals("X scores 2.1\n[0.2, 4.0] points higher", reports).is_empty());
    assert!(unquoted_intervals("AWT − X is −2.1 [−4.0,\n −0.2], at 68.5 [67.8, 69.3] %", reports).is_empty());
    assert_eq!(unquoted_intervals("now −2.1 [−4.0, −0.3] and see [1, 2]", reports), vec!["-2.1 [-4.0, -0.3]"]);
    assert_eq!(intervals("(−1.8 [−2.1, −1.5]), words [a, b]").len(), 1);
}

/// Each `a [b, c]` in `text` (its minus signs made ASCII, its whitespace runs one space): the
/// interval as written there and its three numbers.
fn intervals(text: &str) -> Vec<(String, [f64; 3])> {
    let text = text.replace('−', "-").split_whitespace().collect::<Vec<_>>().join(" ");
    let number =
        |s: &str| s.parse::<f64>().ok().filter(|_| s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+'));
    let mut out = Vec::new();
    for (i, _) in text.match_indices(" [") {
        let point = text[..i].rsplit(' ').next().unwrap().trim_start_matches(['(', '*']);
        let Some((inner, _)) = text[i + 2..].split_once(']') else { continue };
        let Some((lo, hi)) = inner.split_once(", ") else { continue };
        if let (Some(a), Some(b), Some(c)) = (number(point), number(lo), number(hi)) {
            out.push((format!("{point} [{inner}]"), [a, b, c]));
        }
    }
    out
}

/// The intervals quoted in `prose` that `reports` give neither as written nor the other way round.
fn unquoted_intervals(prose: &str, reports: &str) -> Vec<String> {
    let given: Vec<[f64; 3]> = intervals(reports).into_iter().map(|(_, t)| t).collect();
    intervals(prose)
        .into_iter()
        .filter(|(_, [a, b, c])| !given.iter().any(|g| *g == [*a, *b, *c] || *g == [-*a, -*c, -*b]))
        .map(|(quoted, _)| quoted)
        .collect()
}
