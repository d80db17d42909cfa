//! `cargo xtask regress [--bless]`: the smoke preset's clean and robust correct counts against the
//! committed baseline, with a two-sided band (an unexplained rise in robust accuracy usually means a
//! weakened attack).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::records::{Manifest, read_json};
use crate::root;
use crate::runner::{Opts, run_grid};

/// One run's counts in `experiments/smoke-baseline.json`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
struct Counts {
    n: u64,
    clean_correct: u64,
    robust_correct: u64,
}

pub(crate) fn regress(args: &[String]) -> Result<()> {
    let bless = args.iter().any(|a| a == "--bless");
    if let Some(a) = args.iter().find(|a| *a != "--bless") {
        bail!("regress: unknown flag `{a}`");
    }
    let out = root().join("target").join("regress");
    let o = Opts { preset: "smoke".into(), only: None, jobs: 1, force: true, list: false, shard: None, out: Some(out) };
    let mut now = BTreeMap::new();
    for r in &run_grid(&o)? {
        let m: Manifest = read_json(&r.dir.join("manifest.json"))?;
        now.insert(
            r.name.clone(),
            Counts { n: m.eval.n, clean_correct: m.eval.clean_correct, robust_correct: m.eval.robust_correct },
        );
    }
    let path = root().join("experiments").join("smoke-baseline.json");
    let old: BTreeMap<String, Counts> = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}: not a baseline", path.display()))?,
        Err(_) if bless => BTreeMap::new(),
        Err(e) => bail!("{}: {e} (create it with `cargo xtask regress --bless`)", path.display()),
    };
    #[allow(clippy::print_stdout)]
    let say = |s: String| println!("{s}");
    say(format!("{:<36} {:>5} {:>14} {:>14} {:>6}", "run", "n", "clean old→new", "robust old→new", "ok"));
    let mut failed = Vec::new();
    for (name, c) in &now {
        let (oc, or) = old.get(name).map(|x| (x.clean_correct as i64, x.robust_correct as i64)).unwrap_or((-1, -1));
        let band = (c.n as f64 * 0.02).ceil().max(2.0) as i64;
        let ok = oc >= 0 && (c.clean_correct as i64 - oc).abs() <= band && (c.robust_correct as i64 - or).abs() <= band;
        say(format!(
            "{:<36} {:>5} {:>6}→{:<7} {:>6}→{:<7} {:>6}",
            name,
            c.n,
            oc,
            c.clean_correct,
            or,
            c.robust_correct,
            if ok { "ok" } else { "FAIL" }
        ));
        if !ok {
            failed.push(name.clone());
        }
    }
    for name in old.keys().filter(|k| !now.contains_key(*k)) {
        say(format!("{name:<36} missing from this run"));
        failed.push(name.clone());
    }
    if bless {
        std::fs::write(&path, serde_json::to_string_pretty(&now)? + "\n")?;
        say(format!("blessed: {} now holds these counts", path.display()));
        return Ok(());
    }
    if !failed.is_empty() {
        bail!("robust-accuracy regression (band ±max(2, 2% of n) correct answers): {}", failed.join(", "));
    }
    say(format!("regress: all {} runs within the band", now.len()));
    Ok(())
}
