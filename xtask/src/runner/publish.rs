//! `reproduce --commit`: each run recorded into `results/<preset>/` is committed at once, with the
//! study report regenerated from the records, so a grid that spans sittings loses nothing finished
//! when a sitting ends. Only the preset's records and what the study report writes are committed,
//! whatever else the working tree holds or has staged: the study's own figures (not the quick
//! report's), and the quick report's findings lines only where nothing else in that file has changed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::root;

/// Regenerates docs/study.md (and the quick report's lines on what the study found) from `results/` and commits them with the preset's records. A failure
/// (no git, no identity, a locked index) is said and the grid goes on: the records are on disk,
/// and the next run's commit takes them along. The caller holds the records still while it runs.
pub(super) fn publish(preset: &str, run: &str) {
    let report = root().join("docs").join("study.md");
    let quick = "docs/reproduction.md";
    // The quick report is the quick preset's output with the study's findings spliced in: it is the
    // grid's to commit only where nothing outside those lines differs from HEAD (a user's edit, or a
    // quick run not committed yet, stays out of the grid's commit).
    let quick_is_ours = quick_changed_only_in_findings(&root(), quick);
    let done = crate::study::write(&report).and_then(|()| crate::report::refresh_quick_findings()).and_then(|()| {
        let mut paths = vec![
            format!("results/{preset}"),
            "docs/study.md".into(),
            "docs/study-appendix.md".into(),
            "docs/selection.md".into(),
            format!("docs/{}", crate::study::RUNS_CSV),
        ];
        paths.extend(study_figures(&root(), "docs/figures"));
        if quick_is_ours {
            paths.push(quick.into());
        } else {
            eprintln!(
                "      {quick} holds changes besides the study's findings: its findings are refreshed on disk, \
not committed with {run}"
            );
        }
        git_commit(&root(), &paths, &format!("{preset}: {run} recorded; docs/study.md regenerated"))
    });
    match done {
        Ok(true) => eprintln!("      {run}: records and report committed"),
        Ok(false) => {}
        Err(e) => eprintln!("      {run}: not committed ({e:#}); its records are in results/{preset}/"),
    }
}

/// The study's figures in `dir` (docs/figures, relative to `repo`) as repository paths, by
/// [`crate::study::FIGURE_PREFIXES`]: those on disk and those git tracks there, so that a figure the
/// report removed is committed as removed.
fn study_figures(repo: &Path, dir: &str) -> Vec<String> {
    let on_disk = std::fs::read_dir(repo.join(dir))
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect::<Vec<_>>())
        .unwrap_or_default();
    let tracked = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["ls-files", "-z", "--", dir])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split('\0')
                .filter_map(|p| p.strip_prefix(dir)?.strip_prefix('/').map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let names: BTreeSet<String> = on_disk
        .into_iter()
        .chain(tracked)
        .filter(|n| crate::study::FIGURE_PREFIXES.iter().any(|p| n.starts_with(p)) && !n.contains('/'))
        .collect();
    names.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

/// Whether `file` (the quick report) differs from its HEAD version at most between the findings
/// markers; true where it is not there or HEAD has none (then the commit says what is wrong).
fn quick_changed_only_in_findings(repo: &Path, file: &str) -> bool {
    let (Ok(now), Ok(head)) = (std::fs::read_to_string(repo.join(file)), crate::report::at_head(repo, file)) else {
        return true;
    };
    crate::study::outside_findings(&now) == crate::study::outside_findings(&head)
}

/// Commits the current content of `paths` (new files included) in the repository at `repo`, and
/// nothing else; false when they hold no change.
pub(crate) fn git_commit(repo: &Path, paths: &[String], message: &str) -> Result<bool> {
    let git = |args: &[&str]| -> Result<std::process::Output> {
        Command::new("git").arg("-C").arg(repo).args(args).output().context("cannot run git")
    };
    // Paths not made yet (no figure drawn so far) are left out: git refuses a pathspec matching
    // nothing. A tracked path that is gone stays in: `git add` stages its removal.
    let listed =
        git(&[&["ls-files", "-z", "--"], paths.iter().map(String::as_str).collect::<Vec<_>>().as_slice()].concat())?;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let tracked: BTreeSet<&str> = listed.split('\0').collect();
    let paths: Vec<&str> =
        paths.iter().map(String::as_str).filter(|p| repo.join(p).exists() || tracked.contains(p)).collect();
    if paths.is_empty() {
        return Ok(false);
    }
    let out = git(&[&["add", "--"], paths.as_slice()].concat())?;
    if !out.status.success() {
        bail!("git add: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let out = git(&[&["diff", "--cached", "--quiet", "--"], paths.as_slice()].concat())?;
    match out.status.code() {
        Some(0) => return Ok(false),
        Some(1) => {}
        _ => bail!("git diff: {}", String::from_utf8_lossy(&out.stderr).trim()),
    }
    // A pathspec commits those paths only, leaving anything else staged as it was.
    let commit = [&["commit", "-q", "-m", message, "--"], paths.as_slice()].concat();
    let out = git(&commit)?;
    if !out.status.success() {
        bail!("git commit: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(repo: &Path, args: &[&str]) -> String {
        let out = Command::new("git").arg("-C").arg(repo).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new record and the report are committed together; a file staged by someone else stays
    /// staged and out of the commit; nothing new, no commit; outside a repository, an error.
    #[test]
    fn a_record_is_committed_alone_with_its_report() {
        let repo = std::env::temp_dir().join(format!("awt-publish-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&repo);
        std::fs::create_dir_all(repo.join("results/study/run-a")).unwrap();
        std::fs::create_dir_all(repo.join("docs")).unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["config", "user.email", "t@example.org"]);
        git(&repo, &["config", "user.name", "t"]);
        std::fs::write(repo.join("docs/study.md"), "old\n").unwrap();
        git(&repo, &["add", "docs/study.md"]);
        git(&repo, &["commit", "-q", "-m", "start"]);
        std::fs::write(repo.join("results/study/run-a/manifest.json"), "{}\n").unwrap();
        std::fs::write(repo.join("docs/study.md"), "new\n").unwrap();
        std::fs::write(repo.join("unrelated.rs"), "fn main() {}\n").unwrap();
        git(&repo, &["add", "unrelated.rs"]);
        let paths = ["results/study".to_string(), "docs/study.md".into(), "docs/figures".into()];
        assert!(git_commit(&repo, &paths, "study: run-a recorded").unwrap());
        assert_eq!(git(&repo, &["log", "-1", "--format=%s"]).trim(), "study: run-a recorded");
        let files = git(&repo, &["show", "--name-only", "--format=", "HEAD"]);
        assert_eq!(files.lines().collect::<Vec<_>>(), ["docs/study.md", "results/study/run-a/manifest.json"]);
        assert_eq!(
            git(&repo, &["diff", "--cached", "--name-only"]).trim(),
            "unrelated.rs",
            "still staged, not committed"
        );
        assert!(!git_commit(&repo, &paths, "again").unwrap(), "nothing new, no commit");
        assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]).trim(), "2");
        std::fs::remove_dir_all(&repo).unwrap();
        let nowhere = std::env::temp_dir().join(format!("awt-publish-none-{}", std::process::id()));
        std::fs::create_dir_all(nowhere.join("results/study")).unwrap();
        assert!(git_commit(&nowhere, &paths, "x").is_err());
        std::fs::remove_dir_all(&nowhere).unwrap();
    }

    /// The quick report is committed with a record only where nothing outside its findings lines
    /// differs from HEAD, and only the study's figures are, never the quick report's.
    #[test]
    fn only_what_the_study_report_wrote_is_taken_along() {
        let repo = std::env::temp_dir().join(format!("awt-publish-quick-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&repo);
        std::fs::create_dir_all(repo.join("docs/figures")).unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["config", "user.email", "t@example.org"]);
        git(&repo, &["config", "user.name", "t"]);
        let (begin, end) = crate::study::FINDINGS_MARKERS;
        let doc = |table: &str, found: &str| format!("# quick\n\n{table}\n\n{begin}\n{found}\n{end}\n\nrest\n");
        let file = "docs/reproduction.md";
        std::fs::write(repo.join(file), doc("| dense | 71.8 |", "open")).unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "start"]);
        assert!(quick_changed_only_in_findings(&repo, file), "unchanged");
        std::fs::write(repo.join(file), doc("| dense | 71.8 |", "AWT matches")).unwrap();
        assert!(quick_changed_only_in_findings(&repo, file), "only the findings changed");
        std::fs::write(repo.join(file), doc("| dense | 72.4 |", "AWT matches")).unwrap();
        assert!(!quick_changed_only_in_findings(&repo, file), "a quick run's new table is not the grid's");
        std::fs::write(repo.join(file), doc("| dense | 72.4 |", "open").replace(end, "")).unwrap();
        assert!(!quick_changed_only_in_findings(&repo, file), "a lost marker is a change");
        for f in [
            "quick-train-loss.svg",
            "study-search.svg",
            "v2-lenet5-caffe-vs-dense-d0.05.svg",
            "selection-lambda-ker.svg",
        ] {
            std::fs::write(repo.join("docs/figures").join(f), "<svg/>").unwrap();
        }
        let ours = [
            "docs/figures/selection-lambda-ker.svg",
            "docs/figures/study-search.svg",
            "docs/figures/v2-lenet5-caffe-vs-dense-d0.05.svg",
        ];
        assert_eq!(study_figures(&repo, "docs/figures"), ours);
        assert!(git_commit(&repo, &study_figures(&repo, "docs/figures"), "figures").unwrap());
        let tracked = git(&repo, &["ls-files", "docs/figures"]);
        assert!(!tracked.contains("quick-train-loss.svg"), "the quick report's figure is not the grid's: {tracked}");
        // A figure the report no longer draws (removed by it) is committed as removed; the others stay.
        std::fs::remove_file(repo.join(ours[1])).unwrap();
        assert_eq!(study_figures(&repo, "docs/figures"), ours, "a removed tracked figure is still named");
        assert!(git_commit(&repo, &study_figures(&repo, "docs/figures"), "a figure removed").unwrap());
        let tracked = git(&repo, &["ls-files", "docs/figures"]);
        assert_eq!(tracked.lines().collect::<Vec<_>>(), [ours[0], ours[2]], "its removal committed");
        assert!(git(&repo, &["status", "--porcelain"]).contains("?? docs/figures/quick-train-loss.svg"));
        std::fs::remove_dir_all(&repo).unwrap();
    }

    /// A preset that keeps no records has nothing to commit: refused before anything runs.
    #[test]
    fn commit_needs_a_recorded_preset() {
        let o = super::super::Opts::parse(&["--preset".into(), "smoke".into(), "--commit".into()]).unwrap();
        assert!(o.commit);
        let e = super::super::run_grid(&o).unwrap_err().to_string();
        assert!(e.contains("--commit: preset `smoke` keeps no records"), "{e}");
    }
}
