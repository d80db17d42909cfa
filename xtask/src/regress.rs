//! `cargo xtask regress [--bless]`: the smoke preset's clean and robust correct counts against the
//! committed baseline: exactly, where this machine sums its matrix products in the order the baseline
//! was blessed under (`awt numerics`; the runs then repeat bit for bit, so any change is a change of
//! the code), else within a two-sided band (an unexplained rise in robust accuracy usually means a
//! weakened attack).

use awt_runs::layout;
use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::records::{Manifest, read_json};
use crate::runner::{Opts, run_grid};
use crate::workspace::root;

/// One run's counts in `experiments/smoke-baseline.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Counts {
    n: u64,
    clean_correct: u64,
    robust_correct: u64,
    /// The summation order the counts were made under (`awt numerics`, from the run's manifest);
    /// absent in baselines blessed before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gemm: Option<String>,
}

/// Whether `now` must equal `old` exactly: both made under the same recorded summation order.
fn exact(old: &Counts, now: &Counts) -> bool {
    old.gemm.is_some() && old.gemm == now.gemm
}

/// Whether the counts `now` pass against the baseline `old`: equal where [`exact`], else each within
/// its [`band`].
fn passes(old: &Counts, now: &Counts) -> bool {
    let (oc, or) = (old.clean_correct as i64, old.robust_correct as i64);
    let (nc, nr) = (now.clean_correct as i64, now.robust_correct as i64);
    if exact(old, now) {
        return old.n == now.n && (oc, or) == (nc, nr);
    }
    (nc - oc).abs() <= band(now.n, oc) && (nr - or).abs() <= band(now.n, or)
}

/// The allowed change of a correct count: two binomial standard deviations of the baseline count
/// (at least 2). A change of floating-point order (another CPU's GEMM kernels, a fused kernel) moves
/// a trained net like another seed would, so the test set's own sampling noise is the scale; a broken
/// or weakened attack moves robust counts by far more.
fn band(n: u64, baseline: i64) -> i64 {
    let p = (baseline.max(0) as f64 / n.max(1) as f64).clamp(0.0, 1.0);
    (2.0 * (n as f64 * p * (1.0 - p)).sqrt()).ceil().max(2.0) as i64
}

pub(crate) fn regress(args: &[String]) -> Result<()> {
    let bless = args.iter().any(|a| a == "--bless");
    if let Some(a) = args.iter().find(|a| *a != "--bless") {
        bail!("regress: unknown flag `{a}`");
    }
    let out = root().join("target").join("regress");
    let o = Opts {
        preset: "smoke".into(),
        only: None,
        first: Vec::new(),
        jobs: 1,
        force: true,
        list: false,
        commit: false,
        shard: None,
        out: Some(out),
        within: None,
        // The blessed counts are the CPU's: another device sums in another order.
        device: awt_runs::DeviceSpec::Cpu,
        verify: false,
    };
    let mut now = BTreeMap::new();
    for r in &run_grid(&o)? {
        let m: Manifest = read_json(&r.dir.join(layout::MANIFEST))?;
        now.insert(
            r.name.clone(),
            Counts {
                n: m.eval.n,
                clean_correct: m.eval.clean_correct,
                robust_correct: m.eval.robust_correct,
                gemm: m.gemm.clone(),
            },
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
    say(format!("{:<36} {:>5} {:>14} {:>14} {:>6}  {}", "run", "n", "clean old→new", "robust old→new", "ok", "rule"));
    let mut failed = Vec::new();
    for (name, c) in &now {
        let base = old.get(name);
        let (oc, or) = base.map(|x| (x.clean_correct as i64, x.robust_correct as i64)).unwrap_or((-1, -1));
        let ok = base.is_some_and(|b| passes(b, c));
        let rule = if base.is_some_and(|b| exact(b, c)) { "exact (same summation order)" } else { "band" };
        say(format!(
            "{:<36} {:>5} {:>6}→{:<7} {:>6}→{:<7} {:>6}  {rule}",
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
        bail!(
            "robust-accuracy regression (exact where the summation order is the baseline's, else a band of \
             ±max(2, 2 binomial sd of the baseline count) correct answers; `--bless` if the change is meant): {}",
            failed.join(", ")
        );
    }
    say(format!("regress: all {} runs pass", now.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_band_is_two_binomial_sd_and_at_least_two() {
        assert_eq!(super::band(200, 100), 15); // 2 * sqrt(50) = 14.1
        assert_eq!(super::band(200, 0), 2);
        assert_eq!(super::band(200, 200), 2);
        assert_eq!(super::band(10000, 5000), 100);
    }

    /// Under the baseline's summation order one correct answer more or less fails (last stop's
    /// HYDRA fix moved 75 → 69 robust, inside the band); under another order, or against a baseline
    /// that names none, the band decides.
    #[test]
    fn the_same_summation_order_is_held_to_exact_counts() {
        let c = |clean, robust, gemm: Option<&str>| super::Counts {
            n: 200,
            clean_correct: clean,
            robust_correct: robust,
            gemm: gemm.map(str::to_string),
        };
        let xeon = Some("k-blocks of at most 512, small products in 16 lanes");
        let amd = Some("k-blocks of at most 512, small products in 8 lanes");
        assert!(super::passes(&c(125, 75, xeon), &c(125, 75, xeon)));
        assert!(!super::passes(&c(125, 75, xeon), &c(124, 69, xeon)));
        assert!(!super::passes(&c(125, 75, xeon), &c(125, 76, xeon)));
        assert!(super::passes(&c(125, 75, xeon), &c(124, 69, amd)), "another order: the band");
        assert!(super::passes(&c(125, 75, None), &c(124, 69, xeon)), "a baseline without its order: the band");
        assert!(!super::passes(&c(125, 75, amd), &c(125, 95, xeon)), "outside the band fails either way");
    }
}
