//! Every matrix product of tensors in the workspace goes through `awt_base::product::matmul`, so
//! that the CPU sums small products in one order on every machine (docs/reproducing.md, "Across
//! CPUs"). clippy's `disallowed-methods` (`clippy.toml`) enforces it for whoever runs clippy; CI runs
//! the tests only, so this test reads the sources for the same rule: a call of candle's `matmul`,
//! `broadcast_matmul` or of its convolutions (im2col and gemm inside on the CPU) must sit under
//! `#[allow(clippy::disallowed_methods)]` — on the statement before it, on a module that contains
//! it, or on its file.

use std::path::{Path, PathBuf};

const ALLOW: &str = "clippy::disallowed_methods";

/// candle's methods that reach gemm on the CPU (`clippy.toml` lists the same).
const CALLS: [&str; 6] =
    [".matmul(", ".broadcast_matmul(", ".conv1d(", ".conv2d(", ".conv_transpose1d(", ".conv_transpose2d("];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The lines of `src` that call candle's product without an allow covering them (1-based).
fn uncovered(src: &str) -> Vec<usize> {
    let lines: Vec<&str> = src.lines().collect();
    if lines.iter().any(|l| l.trim_start().starts_with("#![allow(") && l.contains(ALLOW)) {
        return Vec::new();
    }
    let mut bad = Vec::new();
    let mut module_from: Option<usize> = None; // an allowed module runs to the end of the file
    let mut statement_until = 0; // an allowed statement: the next two lines
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if line.trim_start().starts_with("#[allow(") && line.contains(ALLOW) {
            let next = lines[i + 1..].iter().find(|l| !l.trim_start().starts_with("#[") && !l.trim().is_empty());
            if next.is_some_and(|l| l.trim_start().starts_with("mod ") || l.trim_start().starts_with("pub mod ")) {
                module_from.get_or_insert(i);
            } else {
                statement_until = i + 2;
            }
            continue;
        }
        let calls = CALLS.iter().any(|c| code.contains(c));
        if calls && module_from.is_none() && i > statement_until {
            bad.push(i + 1);
        }
    }
    bad
}

#[test]
fn candles_matmul_is_called_only_where_allowed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "the workspace's sources were not found under {}", root.display());
    let mut bad = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        // This file names the calls it looks for.
        if f.ends_with("one_product.rs") {
            continue;
        }
        for line in uncovered(&src) {
            bad.push(format!("{}:{line}", f.strip_prefix(&root).unwrap_or(f).display()));
        }
    }
    assert!(
        bad.is_empty(),
        "candle's matmul or convolution called where awt_base::product::matmul or awt_base::conv belongs: {bad:?}"
    );
}

/// The reader sees a bare call, and each form of allow.
#[test]
fn the_reader_tells_covered_calls_from_bare_ones() {
    assert_eq!(uncovered("fn f() {\n    let c = a.matmul(&b)?;\n}\n"), vec![2]);
    assert_eq!(uncovered("fn f() {\n    let c = a.broadcast_matmul(&b)?;\n}\n"), vec![2]);
    assert_eq!(uncovered("fn f() {\n    let c = x.conv2d(&w, 0, 1, 1, 1)?;\n}\n"), vec![2]);
    assert_eq!(uncovered("fn f() {\n    let c = conv::conv2d(&x, &w)?;\n}\n"), Vec::<usize>::new());
    assert_eq!(
        uncovered("fn f() {\n    // a.matmul(&b) in a comment\n    let c = matmul(&a, &b)?;\n}\n"),
        Vec::<usize>::new()
    );
    let statement = "fn f() {\n    #[allow(clippy::disallowed_methods)] // why\n    let c = a.matmul(&b)?;\n    let d = c.matmul(&b)?;\n    let e = d.matmul(&b)?;\n}\n";
    assert_eq!(uncovered(statement), vec![5]);
    let module =
        "fn f() {}\n#[cfg(test)]\n#[allow(clippy::disallowed_methods)]\nmod tests {\n    fn g() { a.matmul(&b); }\n}\n";
    assert_eq!(uncovered(module), Vec::<usize>::new());
    let file = "//! doc\n#![allow(clippy::disallowed_methods)] // why\nfn g() { a.matmul(&b); }\n";
    assert_eq!(uncovered(file), Vec::<usize>::new());
}
