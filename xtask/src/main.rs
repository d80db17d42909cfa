//! `cargo xtask`: the project's automation, in Rust (no shell scripts, no logic in CI YAML).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <command>

commands:
  ci        what CI runs: format check, clippy (warnings are errors), the test suite
  bench     run the criterion benchmarks (cargo bench -p benches)
  help      this text
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("ci") => ci(),
        Some("bench") => cargo(&["bench", "-p", "benches"]),
        Some(other) => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo).args(args).status().with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--release", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&["test", "--release", "--workspace"])?;
    Ok(())
}
