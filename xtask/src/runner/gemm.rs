//! What the `awt` binary a grid runs says about this CPU's matrix products (`awt numerics`), for
//! each run's manifest (docs/reproducing.md, "Across CPUs").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The summation order of this CPU's matrix products as the binary `awt` measures it (`awt
/// numerics`, docs/reproducing.md "Across CPUs"), asked once per binary and process; None where the
/// binary has no such command (builds before it) or says something else.
pub(crate) fn gemm_order(awt: &Path) -> Option<String> {
    static ORDERS: OnceLock<Mutex<HashMap<PathBuf, Option<String>>>> = OnceLock::new();
    let mut orders = ORDERS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    orders.entry(awt.to_path_buf()).or_insert_with(|| ask_gemm_order(awt)).clone()
}

fn ask_gemm_order(awt: &Path) -> Option<String> {
    let out = Command::new(awt).arg("numerics").env("AWT_LOG", "off").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let order = text.trim().strip_prefix("gemm on this CPU: ")?;
    (out.status.success() && !order.contains('\n')).then(|| order.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each binary is asked for its own summation order (a process that runs two builds records
    /// each one's), and a binary without `numerics` (the study's frozen build) gives none.
    #[test]
    fn each_binary_is_asked_for_its_own_order() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("awt-gemm-order-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let stand_in = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let a = stand_in("a", "echo 'gemm on this CPU: k-blocks of at most 512, small products in 16 lanes'");
        let b = stand_in("b", "echo 'gemm on this CPU: k-blocks of at most 1024, small products in 8 lanes'");
        let old = stand_in("old", "echo \"error: unrecognized subcommand 'numerics'\" >&2; exit 2");
        assert_eq!(gemm_order(&a).as_deref(), Some("k-blocks of at most 512, small products in 16 lanes"));
        assert_eq!(gemm_order(&b).as_deref(), Some("k-blocks of at most 1024, small products in 8 lanes"));
        assert_eq!(gemm_order(&old), None);
        assert_eq!(gemm_order(&a).as_deref(), Some("k-blocks of at most 512, small products in 16 lanes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
