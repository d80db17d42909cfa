//! Every record committed under `results/` loads into the contract's types, and re-serialising a
//! record the binary wrote gives its bytes back: the types are the records' one definition.

use std::path::{Path, PathBuf};

use awt_runs::layout::{DYNAMICS, EVAL, EVAL_AA, MANIFEST, MASK, RECORD_SEARCH, RECORD_TRAIN_METRICS};
use awt_runs::records::{DynamicsLine, EpochLine, Eval, Manifest, MaskReport, SearchLine};
use awt_runs::{Density, RunName};

fn records() -> Vec<PathBuf> {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
    let mut out = Vec::new();
    for preset in std::fs::read_dir(&results).unwrap() {
        for run in std::fs::read_dir(preset.unwrap().path()).unwrap() {
            let p = run.unwrap().path();
            if p.join(MANIFEST).exists() {
                out.push(p);
            }
        }
    }
    assert!(out.len() > 100, "only {} records found under {}", out.len(), results.display());
    out
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

/// `a` and `b` are the same record: equal bytes, or (where an older JSON writer chose the other of
/// two equally short digit strings of a float) equal values and equal text but for digits.
fn same_record(a: &str, b: &str) -> bool {
    let skeleton = |s: &str| s.chars().filter(|c| !c.is_ascii_digit()).collect::<String>();
    let value = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    a == b || (skeleton(a) == skeleton(b) && value(a) == value(b))
}

fn same_bytes<T: serde::Serialize + serde::de::DeserializeOwned>(file: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(file) else { return 0 };
    let v: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(same_record(&pretty(&v), &text), "{}: re-serialised bytes differ", file.display());
    1
}

fn same_lines<T: serde::Serialize + serde::de::DeserializeOwned>(file: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(file) else { return 0 };
    for (i, line) in text.lines().enumerate() {
        let v: T = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1));
        assert!(same_record(&serde_json::to_string(&v).unwrap(), line), "{}:{}", file.display(), i + 1);
    }
    1
}

#[test]
fn the_binarys_records_re_serialise_to_their_bytes() {
    let (mut evals, mut masks, mut searches, mut dynamics, mut epochs) = (0, 0, 0, 0, 0);
    for r in records() {
        evals += same_bytes::<Eval>(&r.join(EVAL)) + same_bytes::<Eval>(&r.join(EVAL_AA));
        masks += same_bytes::<MaskReport>(&r.join(MASK));
        searches += same_lines::<SearchLine>(&r.join(RECORD_SEARCH));
        dynamics += same_lines::<DynamicsLine>(&r.join(DYNAMICS));
        epochs += same_lines::<EpochLine>(&r.join(RECORD_TRAIN_METRICS));
    }
    assert!(
        evals > 100 && masks > 100 && searches > 50 && dynamics > 10 && epochs > 100,
        "{evals} {masks} {searches} {dynamics} {epochs}"
    );
}

#[test]
fn every_manifest_loads_and_its_name_parses_to_its_fields() {
    let mut current_order = 0;
    for r in records() {
        let text = std::fs::read_to_string(r.join(MANIFEST)).unwrap();
        let m: Manifest = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", r.display()));
        let n: RunName = m.name.parse().unwrap_or_else(|e| panic!("{}: {e}", r.display()));
        assert_eq!(
            (n.arch.as_str(), n.variant.method, n.density, n.seed),
            (m.arch.as_str(), m.method, m.density, m.seed),
            "{}",
            r.display()
        );
        assert_eq!(n.variant.to_string(), m.variant());
        assert_eq!(n.to_string(), m.name);
        assert!(m.method.is_dense() == (m.density == Density::ONE));
        // The runner writes fields in declaration order; a few early manifests have them sorted.
        if text.starts_with("{\n  \"preset\"") {
            assert!(same_record(&pretty(&m), &text), "{}: re-serialised bytes differ", r.display());
            current_order += 1;
        }
    }
    assert!(current_order > 100, "{current_order}");
}
