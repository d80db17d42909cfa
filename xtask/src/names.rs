//! How runs are named and hashed: a run's variant from its name, and the stable hash of its
//! settings. Self-contained (no other module of xtask), so the fuzz targets compile it with the
//! record reader and the preset parser.

/// The method with its ablation of a run named `<arch>-<variant>-d<density>-s<seed>`.
pub(crate) fn variant_of(name: &str, arch: &str) -> String {
    let name = name.strip_prefix(&format!("{arch}-")).unwrap_or(name);
    name.rfind("-d").map_or(name, |i| &name[..i]).to_string()
}

/// FNV-1a, 64 bits, as 16 hex digits: stable across Rust versions (unlike `DefaultHasher`).
pub(crate) fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}
