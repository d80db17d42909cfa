//! The workspace xtask works on: its root folder, and `cargo` run there. A leaf module (it imports no
//! other), so every module can use it without reaching back up to `main.rs`.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace's root folder.
pub(crate) fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Runs `cargo args` in the workspace root, echoing the command; an error when it fails.
pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status =
        Command::new(&cargo).args(args).current_dir(root()).status().with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The `awt` binary: `AWT_BIN` when set (a frozen build, so long grids are not affected by rebuilds
/// while they run), else a fresh release build.
pub(crate) fn awt_binary() -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AWT_BIN") {
        return Ok(std::path::PathBuf::from(p));
    }
    cargo(&["build", "--release", "-p", "awt-cli"])?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root().join("target"));
    Ok(target.join("release").join("awt"))
}

/// Whether `awt data list` finds the data set `name` installed.
pub(crate) fn data_installed(awt: &std::path::Path, name: &str) -> Result<bool> {
    let out = Command::new(awt).args(["data", "list"]).output().context("cannot run awt data list")?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some(name) && w.next() == Some("found")
    }))
}
