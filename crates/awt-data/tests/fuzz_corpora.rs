//! Replays the fuzz corpora (`fuzz/corpus/<target>/`, minimised after each fuzzing campaign) and
//! the inputs that once crashed a reader (`fuzz/regressions/<target>/`) through the readers: every
//! one must come back as a value or an error, never a panic. The fuzzing itself (`cargo +nightly
//! fuzz run <target>`) is in `fuzz/`; this is its cheap guard in the ordinary test suite.

use std::path::{Path, PathBuf};

/// Every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>`.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for sub in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(sub).join(target)) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn idx_corpus_replays_without_panics() {
    let all = inputs("idx");
    assert!(all.len() >= 4, "the idx corpus is missing: {} inputs", all.len());
    let mut parsed = 0;
    for (p, b) in &all {
        if awt_data::idx::parse(b, p).is_ok() {
            parsed += 1;
        }
        let _ = awt_data::idx::parse_expecting(b, p, Some(&[60000, 28, 28]));
    }
    assert!(parsed > 0, "no corpus input parses: the seeds are gone");
}

#[test]
fn cifar_corpus_replays_without_panics() {
    let all = inputs("cifar");
    assert!(!all.is_empty(), "the cifar corpus is missing");
    for (p, b) in &all {
        let _ = awt_data::cifar::parse(b, p);
    }
}

#[test]
fn parquet_corpus_replays_without_panics() {
    let all = inputs("parquet");
    assert!(!all.is_empty(), "the parquet corpus is missing");
    let mut parsed = 0;
    for (p, b) in &all {
        if awt_data::hf::read_bytes(b.clone(), p).is_ok() {
            parsed += 1;
        }
    }
    assert!(parsed > 0, "no corpus input parses: the seeds are gone");
}
