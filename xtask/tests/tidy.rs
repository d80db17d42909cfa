//! Tidy checks: the dependency graph matches docs/ARCHITECTURE.md, every source file starts with
//! a `//!` line, and xtask links no candle or awt crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Rows of the "Dependency rules" table: crate → (allowed awt deps, may use binary-only deps).
fn rules() -> BTreeMap<String, (BTreeSet<String>, bool)> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let section = doc.split("## Dependency rules").nth(1).expect("ARCHITECTURE.md has a `## Dependency rules` section");
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 {
            continue;
        }
        let deps = cells[1].split_whitespace().map(String::from).collect();
        out.insert(cells[0].to_string(), (deps, cells[2] == "yes"));
    }
    out
}

#[test]
fn dependency_graph_matches_architecture_md() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = rules();
    const BIN_ONLY: [&str; 4] = ["clap", "indicatif", "serde_json", "tracing-subscriber"];
    let mut seen = BTreeSet::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap().to_string();
        let (allowed, bin_ok) = rules
            .get(&name)
            .unwrap_or_else(|| panic!("crate `{name}` is missing from ARCHITECTURE.md's dependency table"));
        seen.insert(name.clone());
        let normal: Vec<&serde_json::Value> =
            pkg["dependencies"].as_array().unwrap().iter().filter(|d| d["kind"].is_null()).collect();
        let awt: BTreeSet<String> =
            normal.iter().map(|d| d["name"].as_str().unwrap().to_string()).filter(|n| n.starts_with("awt-")).collect();
        assert_eq!(&awt, allowed, "`{name}` depends on {awt:?}, ARCHITECTURE.md allows {allowed:?}");
        if !bin_ok {
            for d in &normal {
                let dn = d["name"].as_str().unwrap();
                assert!(!BIN_ONLY.contains(&dn), "library crate `{name}` depends on binary-only `{dn}`");
            }
        }
        if name == "xtask" {
            for d in &normal {
                let dn = d["name"].as_str().unwrap();
                assert!(!dn.starts_with("candle") && !dn.starts_with("awt-"), "xtask must not link `{dn}`");
            }
        }
    }
    let listed: BTreeSet<String> = rules.keys().cloned().collect();
    assert_eq!(seen, listed, "ARCHITECTURE.md lists crates that do not exist (or misses some)");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    for d in ["crates", "xtask", "benches"] {
        rust_files(&root().join(d), &mut files);
    }
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("//!"), "{} does not start with a `//!` line saying what it holds", f.display());
    }
}
