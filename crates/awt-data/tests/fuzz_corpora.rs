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

/// The input of `fuzz/regressions/<target>/` whose name starts with `prefix`.
fn regression(target: &str, prefix: &str) -> (PathBuf, Vec<u8>) {
    inputs(target)
        .into_iter()
        .find(|(p, _)| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .unwrap_or_else(|| panic!("the regression input fuzz/regressions/{target}/{prefix}… is missing"))
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

#[test]
fn a_parquet_file_that_panics_the_decoder_is_an_error_naming_the_file() {
    // Found by fuzzing: a forged dictionary page makes parquet 60.1's plain byte-array decoder slice
    // out of bounds. The reader reports it as a malformed file instead of unwinding into the caller.
    let (p, b) = regression("parquet", "crash-c3fd7b18");
    let e = awt_data::hf::read_bytes(b, &p).unwrap_err().to_string();
    assert!(e.contains("crash-c3fd7b18") && e.contains("malformed parquet"), "{e}");
}

#[test]
fn a_parquet_footer_that_claims_huge_children_is_refused_before_allocating() {
    // Found by fuzzing: a 1 kB file whose schema element claims ~1.2 G children made parquet 60.1
    // reserve 9.9 GB before checking them. The footer is now checked first.
    let (p, b) = regression("parquet", "oom-bfc72b2f");
    let e = awt_data::hf::read_bytes(b.clone(), &p).unwrap_err().to_string();
    assert!(e.contains("oom-bfc72b2f") && e.contains("children"), "{e}");
    // The same through the file path (the footer read from the end of the file).
    let e = awt_data::hf::read(&p).unwrap_err().to_string();
    assert!(e.contains("children"), "{e}");
}
