//! `cargo xtask report --check`: the quick report the code at HEAD just produced must equal the
//! committed one, except for what no two sittings share (each run's wall time and the commit of the
//! binary that ran it). CI runs it after `cargo xtask reproduce`, so a committed report can never
//! go out of step with the code again.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// How the quick report's provenance line names its runs' summation order (`awt numerics`).
pub(super) const GEMM_LABEL: &str = "Matrix products: ";
pub(super) const GEMM_END: &str = " (`awt numerics`)";

/// The report with the volatile cells of its "Runs" tables (wall time, git commit) and the CPU's
/// name blanked (whether two reports are comparable at all is decided before, by [`check`]).
pub(super) fn normalised(md: &str) -> String {
    let mut in_runs = false;
    let mut out = String::new();
    for line in md.lines() {
        let blanked;
        let line = match cpu_of(line) {
            Some(cpu) => {
                blanked = line.replacen(&format!(" CPU: {cpu}."), " CPU: ….", 1);
                blanked.as_str()
            }
            None => line,
        };
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

/// The summation order of a report's matrix products (its provenance line `Matrix products: …`).
fn gemm_of(md: &str) -> Option<&str> {
    let i = md.find(&format!(" {GEMM_LABEL}"))? + 1 + GEMM_LABEL.len();
    let end = md[i..].find(GEMM_END)?;
    Some(&md[i..i + end])
}

/// Whether two reports' runs can give the same bits: where both name their summation order, the
/// same order (the only run-time choices found, docs/reproducing.md "Across CPUs"); else the same CPU.
fn comparable(committed: &str, now: &str) -> bool {
    match (gemm_of(committed), gemm_of(now)) {
        (Some(a), Some(b)) => a == b,
        _ => cpu_of(committed) == cpu_of(now),
    }
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
    // Another summation order moves trained nets in the last digits as another seed would
    // (docs/reproducing.md, "Across CPUs"): results are compared only where the orders agree.
    if !comparable(&committed, &now) {
        let said = |md: &str| {
            format!(
                "CPU {}, {}",
                cpu_of(md).unwrap_or("unknown"),
                gemm_of(md).unwrap_or("summation order not recorded")
            )
        };
        eprintln!(
            "{report}: committed from runs on {}, produced on {}: not compared (another summation order moves \
results in the last digits); regenerate it here to compare",
            said(&committed),
            said(&now)
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
        // Comparable: the same summation order where both say it (whatever the CPU), else the same CPU.
        let with = |cpu: &str, order: &str| {
            format!(
                "{a}\nToolchain: rustc; candle-core 0.11.1. CPU: {cpu}. Dataset files: x. {GEMM_LABEL}{order}{GEMM_END}.\n"
            )
        };
        let xeon = with("Intel Xeon, avx512f", "k-blocks of at most 512, small products in 16 lanes");
        assert_eq!(gemm_of(&xeon), Some("k-blocks of at most 512, small products in 16 lanes"));
        assert_eq!(cpu_of(&xeon), Some("Intel Xeon, avx512f"), "the order does not run into the CPU");
        let other_xeon = with("Intel Xeon Platinum, avx512f", "k-blocks of at most 512, small products in 16 lanes");
        assert!(comparable(&xeon, &other_xeon));
        assert_eq!(normalised(&xeon), normalised(&other_xeon), "the CPU's name is provenance, not a result");
        assert!(!comparable(
            &xeon,
            &with("Intel Xeon, avx512f", "k-blocks of at most 1024, small products in 8 lanes")
        ));
        let old_report =
            format!("{a}\nToolchain: rustc; candle-core 0.11.1. CPU: Intel Xeon, avx512f. Dataset files: x.\n");
        assert!(comparable(&old_report, &xeon), "no order recorded: the same CPU decides");
        assert!(!comparable(&old_report, &other_xeon));
    }
}
