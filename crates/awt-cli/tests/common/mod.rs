//! What the CLI tests of the second reliability round share: running the `awt` binary and checking
//! that it succeeds or fails naming what it should.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The `awt` binary with `args`, without the user's data folder and with logging off.
pub fn awt_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_awt"));
    c.args(args).env_remove("AWT_DATA_DIR").env("AWT_LOG", "off");
    c
}

/// Runs `awt`; returns (success, stdout, stderr).
pub fn awt(args: &[&str]) -> (bool, String, String) {
    let o = awt_cmd(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// Runs `awt` expecting success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let (success, out, err) = awt(args);
    assert!(success, "{args:?} failed: {err}");
    out
}

/// Runs `awt` expecting failure; returns stderr, which must name `needle` and hold no panic.
pub fn fails(args: &[&str], needle: &str) -> String {
    let (success, _, err) = awt(args);
    assert!(!success, "{args:?} succeeded, expected an error naming {needle}");
    assert!(err.contains(needle), "{args:?}: the error does not name {needle}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The hash builds before the model hash gave a model file: its bytes read as lossy UTF-8 text.
pub fn legacy_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(String::from_utf8_lossy(bytes).as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}
