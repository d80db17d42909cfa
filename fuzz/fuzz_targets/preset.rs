//! The preset parser of xtask (`experiments/<preset>.toml`, read into typed settings and checked)
//! on arbitrary text, then the grid it expands to: errors are fine, panics are not. Compiled from
//! xtask's own source files.
#![no_main]

use std::path::Path;

#[path = "../../xtask/src/spec.rs"]
#[allow(dead_code)]
mod spec;

/// spec.rs reads presets from the repository root; the fuzz targets never load a file.
mod workspace {
    #[allow(dead_code)]
    pub(crate) fn root() -> std::path::PathBuf {
        std::path::PathBuf::from("/nonexistent")
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(spec) = spec::parse(text, Path::new("fuzz.toml"), "fuzz") {
            for v in &spec.methods {
                let _ = spec::plain_of(v);
            }
        }
    }
});
