//! `cargo xtask report --check`: the quick report the code at HEAD just produced must equal the
//! committed one, except for what no two sittings share (each run's wall time and the commit of the
//! binary that ran it). CI runs it after `cargo xtask reproduce`, so a committed report can never
//! go out of step with the code again.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The report with the volatile cells of its "Runs" tables (wall time, git commit) blanked.
pub(super) fn normalised(md: &str) -> String {
    let mut in_runs = false;
    let mut out = String::new();
    for line in md.lines() {
        if line.starts_with("### ") {
            in_runs = line == "### Runs";
        }
        if in_runs && line.starts_with("| ") && !line.starts_with("| run |") {
            let mut cells: Vec<&str> = line.split('|').collect();
            // "", run, config hash, wall time, git commit, threads, ""
            if cells.len() == 7 {
                cells[3] = " … ";
                cells[4] = " … ";
            }
            out += &cells.join("|");
        } else {
            out += line;
        }
        out.push('\n');
    }
    out
}

/// The CPU a report's runs computed on (its provenance line `CPU: …`).
fn cpu_of(md: &str) -> Option<&str> {
    let i = md.find(" CPU: ")? + 6;
    let end = md[i..].find(". Dataset files")?;
    Some(&md[i..i + end])
}

/// `file`'s content as committed at HEAD in the repository at `repo`; an error where git has none.
pub(crate) fn at_head(repo: &Path, file: &str) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["show", &format!("HEAD:{file}")])
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!("git show HEAD:{file}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Compares `report` (as regenerated) with its committed version in the repository at `repo`.
pub(super) fn check(repo: &Path, report: &str) -> Result<()> {
    let now = std::fs::read_to_string(repo.join(report)).with_context(|| format!("cannot read {report}"))?;
    let committed = at_head(repo, report)?;
    // Another CPU's vector kernels move trained nets in the last digits as another seed would
    // (docs/checks.md, the regression band): results are compared only on the CPU that made them.
    let (was, is) = (cpu_of(&committed), cpu_of(&now));
    if was != is {
        eprintln!(
            "{report}: committed from runs on CPU {}, produced on {}: not compared (floating-point results differ \
between CPUs); regenerate it on this CPU to compare",
            was.unwrap_or("unknown"),
            is.unwrap_or("unknown")
        );
        return Ok(());
    }
    let (a, b) = (normalised(&committed), normalised(&now));
    if a == b {
        eprintln!("{report}: what this code produces equals the committed report (wall times and commits aside)");
        return Ok(());
    }
    let diff: Vec<String> = a
        .lines()
        .zip(b.lines())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .take(10)
        .map(|(i, (x, y))| format!("line {}:\n  committed: {x}\n  produced:  {y}", i + 1))
        .collect();
    bail!(
        "{report} differs from what the code at HEAD produces ({} lines committed, {} produced); regenerate it with \
`cargo xtask reproduce` and commit it:\n{}",
        a.lines().count(),
        b.lines().count(),
        diff.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall times and commits may differ; any number of the results may not.
    #[test]
    fn only_wall_times_and_commits_may_differ() {
        let a = "## quick\n\n| dense | 71.8 |\n\n### Runs\n\n| run | config hash | wall time (s) | git commit | threads |\n|---|---|---|---|---|\n| r1 | `ab` | 31 | `7a236ffdbf` | 1 |\n";
        let b = a.replace("| 31 |", "| 29 |").replace("7a236ffdbf", "0123456789");
        assert_eq!(normalised(a), normalised(&b));
        assert_ne!(normalised(a), normalised(&a.replace("71.8", "72.4")));
        assert_ne!(normalised(a), normalised(&a.replace("`ab`", "`ac`")));
        let line = "Toolchain: rustc 1.95.0; candle-core 0.11.1. CPU: AMD EPYC, avx2. Dataset files: x.";
        assert_eq!(cpu_of(line), Some("AMD EPYC, avx2"));
        assert_eq!(cpu_of("Toolchain: rustc; candle-core 0.11.1. Dataset files: x."), None);
    }
}
