//! Tidy checks: the dependency graph matches docs/ARCHITECTURE.md, every source file starts with
//! a `//!` line, and xtask links no candle and no awt crate but the run contract (awt-runs).

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
        if name == "awt-runs" {
            let names: Vec<&str> = normal.iter().map(|d| d["name"].as_str().unwrap()).collect();
            assert_eq!(names, ["serde"], "the run contract links serde only");
        }
        if name == "xtask" {
            for d in &normal {
                let dn = d["name"].as_str().unwrap();
                assert!(
                    !dn.starts_with("candle") && (!dn.starts_with("awt-") || dn == "awt-runs"),
                    "xtask must not link `{dn}`"
                );
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

/// Lines of a source file before its inline test module (tests apart, as the size rule says).
fn lines_before_tests(text: &str) -> usize {
    text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count()
}

#[test]
fn no_source_file_grows_past_500_lines() {
    let mut files = Vec::new();
    for d in ["crates", "xtask", "benches"] {
        rust_files(&root().join(d), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "tests"))
        .filter_map(|f| {
            let n = lines_before_tests(&std::fs::read_to_string(f).unwrap());
            (n > 500).then(|| format!("{}: {n} lines", f.strip_prefix(root()).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern:\n{}", long.join("\n"));
}

/// Library code makes every tensor on the device of the model or data it belongs to: outside tests
/// and docs, `Device::Cpu` is named only where a file is written or read for its bytes, or as the
/// fallback of an empty parameter list (each place listed here, with why).
#[test]
fn library_code_names_the_cpu_only_where_listed() {
    const ALLOWED: [(&str, &str); 9] = [
        ("crates/awt-cli/src/device_check.rs", "the device check's reference side is the CPU by definition"),
        ("crates/awt-cli/src/output.rs", "`--device cpu` itself"),
        ("crates/awt-cli/src/commands.rs", "init and inspect compute nothing: they read and write files"),
        ("crates/awt-cli/src/ntk.rs", "the kernel's example indices, written to a file"),
        ("crates/awt-nets/src/net.rs", "the device of a net without parameters"),
        ("crates/awt-prune/src/scores.rs", "SynFlow on a net without weights"),
        ("crates/awt-train/src/folder.rs", "a checkpoint of no parameters"),
        ("crates/awt-base/src/testing.rs", "test helpers (feature `test-util`)"),
        ("crates/awt-nets/src/testing.rs", "the peer fixtures' formula nets, for tests (feature `test-util`)"),
    ];
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut named = Vec::new();
    let mut used = Vec::new();
    for f in files.iter().filter(|f| !f.components().any(|c| c.as_os_str() == "tests") && !f.ends_with("tests.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
        let code =
            text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).filter(|l| !l.trim_start().starts_with("//"));
        if code.clone().any(|l| l.contains("Device::Cpu")) {
            match ALLOWED.iter().any(|(p, _)| *p == rel) {
                true => used.push(rel),
                false => named.push(rel),
            }
        }
    }
    assert!(named.is_empty(), "make these tensors on the model's or the data's device: {named:?}");
    let stale: Vec<&str> = ALLOWED.iter().map(|(p, _)| *p).filter(|p| !used.iter().any(|u| u == p)).collect();
    assert!(stale.is_empty(), "no longer name the CPU (take them off the list): {stale:?}");
}

/// docs/ARCHITECTURE.md's codemap stays honest: every crate has a row, and the row names (in
/// backticks) each public module of the crate's `lib.rs`.
#[test]
fn the_codemap_names_every_crates_public_modules() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let codemap = doc.split("## Codemap").nth(1).expect("a `## Codemap` section").split("\n## ").next().unwrap();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = e.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Ok(lib) = std::fs::read_to_string(dir.join("src/lib.rs")) else { continue };
        let Some(row) = codemap.lines().find(|l| l.starts_with(&format!("| `crates/{name}` |"))) else {
            missing.push(format!("{name}: no row"));
            continue;
        };
        for m in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';')) {
            if !row.contains(&format!("`{m}`")) {
                missing.push(format!("{name}: `{m}`"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/ARCHITECTURE.md's codemap misses:\n{}", missing.join("\n"));
}

/// The first path segments of a file's `super::` references outside its tests (`super::data::Rec`
/// → `data`; `super::{a, b}` → `a`, `b`).
fn super_refs(text: &str) -> BTreeSet<String> {
    let code = &text[..text.find("#[cfg(test)]").unwrap_or(text.len())];
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + "super::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(g) => g[..g.find('}').unwrap_or(g.len())].split(',').collect(),
                None => vec![rest],
            };
            for n in names {
                let name: String = n.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// No module of xtask imports from its parent: a child module (`src/<parent>/<child>.rs`) reaches
/// only its siblings through `super::` (shared items live in a sibling such as `study/data.rs`).
#[test]
fn no_xtask_module_imports_from_its_parent() {
    let mut files = Vec::new();
    rust_files(&root().join("xtask/src"), &mut files);
    let mut bad = Vec::new();
    for f in files.iter().filter(|f| f.file_name().is_some_and(|n| n != "tests.rs")) {
        let dir = f.parent().unwrap();
        if dir == root().join("xtask/src") {
            continue;
        }
        for name in super_refs(&std::fs::read_to_string(f).unwrap()) {
            if !dir.join(format!("{name}.rs")).exists() {
                bad.push(format!("{}: super::{name}", f.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(bad.is_empty(), "these take items from their parent module; move them to a sibling:\n{}", bad.join("\n"));
    // The rule sees what it should.
    assert_eq!(
        super_refs("use super::{data::Rec, x};\nfn f() { super::y(); }\n#[cfg(test)]\nuse super::z;"),
        ["data", "x", "y"].map(String::from).into()
    );
}

/// The top-level modules of a crate's `src/` a file refers to through `crate::` paths in code
/// (comments, doc links included, are not imports).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let mut src_dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    src_dirs.push(root().join("xtask/src"));
    for src in src_dirs {
        // module → modules it refers to (a folder `m/` belongs to module `m`).
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap();
            let module =
                rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let refs = crate_refs(&std::fs::read_to_string(f).unwrap());
            graph.entry(module.clone()).or_default().extend(refs.into_iter().filter(|r| *r != module));
        }
        // Depth-first search for a back edge.
        fn visit(
            m: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut cycle = path[i..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_string());
            for next in g.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, g, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
                panic!("{}: modules import each other in a cycle: {}", src.display(), cycle.join(" → "));
            }
        }
    }
}

#[test]
fn no_tracked_file_points_outside_the_repository() {
    // A reader of the repository alone must be able to follow every reference: no paths into the
    // material beside the checkout that a clone does not have.
    let out = Command::new("git").args(["ls-files"]).current_dir(root()).output();
    let files: Vec<PathBuf> = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).lines().map(|l| root().join(l)).collect(),
        _ => return, // not a git checkout: nothing is tracked
    };
    // Built at run time, so that this file does not match itself.
    let needles: Vec<String> = ["docs", "research", "peers", "hooks"].iter().map(|d| format!("shared/{d}/")).collect();
    let mut bad = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n.as_str())) {
                bad.push(format!("{}:{}: {}", f.strip_prefix(root()).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "tracked files point outside the repository:\n{}", bad.join("\n"));
}

#[test]
fn the_cycle_and_size_detectors_see_what_they_should() {
    // The detectors themselves: a test that cannot fail proves nothing.
    let refs = crate_refs("use crate::a::X;\nuse crate::{b, c::Y};\nlet z = crate::d::f();\n/// [`crate::e`]");
    assert_eq!(refs, ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect());
    assert_eq!(lines_before_tests("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
}
