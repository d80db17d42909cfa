//! `cargo xtask`: the project's automation, in Rust (no shell scripts, no logic in CI YAML).
//! It links no awt crate: experiments run through the `awt` binary, so the CLI and the run-folder
//! files are the contract.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod census;
mod gpu;
mod gpu_report;
// The protocol's decision rule; the study v2 report (issue 23) is its user, written next.
#[allow(dead_code)]
mod decide;
mod plan;
mod plot;
mod records;
mod regress;
mod report;
mod runner;
mod select;
mod spec;
mod stats;
mod study;
mod workspace;

use workspace::cargo;

use anyhow::{Result, bail};

const HELP: &str = "\
cargo xtask <command>

commands:
  reproduce [--preset NAME] [--only RUN,...] [--first PATTERN,...] [--jobs N]
            [--force] [--list] [--shard i/n] [--commit] [--within DURATION] [--device cpu|cuda[:N]|auto] [--verify]
            (--preset: any experiments/NAME.toml — smoke, quick, ntt-validation, study, paper, study v2's
            select-mlp-budget, select-mlp, select-lenet5-budget, select-lenet5, final-mlp, final-lenet5;
            --only: these runs, by their exact names as --list prints them (the quick preset's report of
            a part of its grid goes to runs/quick/report.md, not docs/reproduction.md);
            --jobs: concurrent runs, default one per core, the cores shared between them;
            --first: the runs whose name matches these patterns first, in that order, then the rest;
            --commit, recorded presets: git-commit each new record in results/ with docs/study.md regenerated;
            --within 2h30m, recorded presets: start only runs whose recorded median time still fits;
            --device: where every awt step computes, recorded in each eval.json and manifest; default cpu;
            --verify, recorded presets, with --only: make those recorded runs again in runs/verify/<preset>/
            and compare them with their records (counts, ticket, epochs, search log, dynamics; times aside))
            run an experiment grid (experiments/<preset>.toml) into runs/<preset>/, then write the report
            (default preset: quick, 2 to 6 minutes on 2 cores)
  report    [--runs DIR]... [--out FILE] | --study [--out FILE] | --check
            build docs/reproduction.md and docs/figures/*.svg from run folders (merges several DIRs);
            --study: docs/study.md (NTT validation and the study grid, intervals and verdicts) from results/,
            beside it study-appendix.md, selection.md and study-runs.csv (every recorded run as one row);
            --check: docs/reproduction.md as just produced equals the committed one (wall times, commits aside)
  census    [--preset final-mlp|final-lenet5|select-mlp|select-lenet5] [--force]
            the masks at initialisation of a final preset's methods, seeds and densities with the output
            layer pruned like the others (a mask only, no training), and the classes each cuts off, into
            results/census/<preset>.json (docs/protocol.md section 3; docs/study.md reads it); a recorded
            census is kept unless --force
  regress   [--bless]
            run the smoke preset and compare clean/robust correct counts with experiments/smoke-baseline.json
            (equal under the baseline's summation order, `awt numerics`; else within a band)
  bench     [--peers] [--filter REGEX] [--threads N] [--no-at-epoch]
            run the criterion benchmarks (cargo bench -p benches); with --peers also the PyTorch and
            neural-tangents scripts of benches/peers/ (environments made on first use under target/peers/)
            and write the side-by-side table of docs/performance.md from that one sitting
  gpu-build [--compute-cap 90]
            build the awt binary with candle's CUDA backend (--device cuda) here, without a system CUDA:
            the CUDA 13.0 toolkit from PyPI wheels under target/cuda/, a link-time libcuda stub; writes
            target/cuda/awt and target/cuda/awt.xz (for a CUDA 13.0 driver, sm_90 by default); see
            docs/reproducing.md, section On a GPU
  gpu-report DIR
            the GPU section of docs/performance.md from the files scripts/gpu-check.sh wrote into DIR
  ci        what CI runs: format check, clippy (warnings are errors), the test suite, regress
  help      this text
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = if args.is_empty() { &[][..] } else { &args[1..] };
    let asks_help = rest.iter().any(|a| a == "-h" || a == "--help");
    match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some(_) if asks_help => {
            print!("{HELP}");
            Ok(())
        }
        Some("ci") => ci(),
        Some("bench") => bench::bench(rest),
        Some("reproduce") => runner::reproduce(rest),
        Some("report") => report::run(rest),
        Some("regress") => regress::regress(rest),
        Some("census") => census::census(rest),
        Some("gpu-build") => gpu::gpu_build(rest),
        Some("gpu-report") => gpu_report::gpu_report(rest),
        Some(other) => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--release", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&["test", "--release", "--workspace"])?;
    regress::regress(&[])
}
