//! The record reader of xtask (`manifest.json` and `eval.json`, then every invariant check) on
//! arbitrary bytes: errors are fine, panics are not. Compiled from xtask's own source files.
#![no_main]

use std::path::Path;

#[path = "../../xtask/src/records.rs"]
#[allow(dead_code, unused_imports)]
mod records;
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
    if let Ok(m) = serde_json::from_slice::<records::Manifest>(data) {
        let _ = records::check(&m, Path::new("/results/x/manifest.json"));
        let _ = records::check(&m, &Path::new("/results").join(&m.name).join("manifest.json"));
        let _ = (m.clean(), m.robust(), m.first_attack(), m.variant());
    }
    let _ = serde_json::from_slice::<records::EvalRecord>(data);
});
