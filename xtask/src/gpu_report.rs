//! `cargo xtask gpu-report DIR`: the GPU section of docs/performance.md (between its `gpu:begin` /
//! `gpu:end` markers) from what `scripts/gpu-check.sh` wrote into DIR: `check-fresh.json` and
//! `check-trained.json` (`awt check-device`), `peers.jsonl` (the PyTorch peers on the same device),
//! `nvidia-smi.txt`, `version.txt`, `quick/*.json` (the quick preset's manifests).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::workspace::root;

const MARKERS: (&str, &str) = ("<!-- gpu:begin (written by cargo xtask gpu-report) -->", "<!-- gpu:end -->");

fn read(dir: &Path, name: &str) -> Result<Value> {
    let p = dir.join(name);
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))
}

/// A relative error as `3.1e-7`.
fn e(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.1e}"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| if x >= 100.0 { format!("{x:.0} ms") } else { format!("{x:.2} ms") })
}

/// The peers' lines: `(net, measure) → value` (ms, or seconds per image count for the epoch).
fn peer(lines: &[Value], net: &str, measure: &str) -> Option<f64> {
    let l = lines.iter().find(|l| l["net"] == net && l["measure"] == measure)?;
    match measure {
        "at_epoch" => Some(l["s"].as_f64()? * 60_000.0 / l["images"].as_f64()?),
        _ => l["ms"].as_f64(),
    }
}

/// The section's text from the check's folder.
pub(crate) fn section(dir: &Path) -> Result<String> {
    let fresh = read(dir, "check-fresh.json")?;
    let trained = read(dir, "check-trained.json").ok();
    let peers: Vec<Value> = std::fs::read_to_string(dir.join("peers.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("peers.jsonl: not JSON lines")?;
    let gpu = std::fs::read_to_string(dir.join("nvidia-smi.txt"))
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.contains("NVIDIA") && l.contains('|')).map(|l| l.trim_matches('|').trim().to_string())
        })
        .unwrap_or_else(|| fresh["device"].as_str().unwrap_or("?").to_string());
    let version = std::fs::read_to_string(dir.join("version.txt")).unwrap_or_default();
    let torch = peers.first().and_then(|p| p["peer"].as_str()).unwrap_or("no peer ran");
    let mut s = String::new();
    writeln!(
        s,
        "Written from the files of one `scripts/gpu-check.sh` run: device `{}` ({gpu}), {}; peer: {torch} on the same device.\n",
        fresh["device"].as_str().unwrap_or("?"),
        version.trim()
    )?;
    writeln!(
        s,
        "**Agreement with the CPU's kernels** (relative Frobenius error; PGD-20 robust count on the first test images of {}):\n",
        fresh["data"].as_str().unwrap_or("?")
    )?;
    writeln!(
        s,
        "| net | logits | input gradient | weight gradients (max) | NTK 64×64 | one search step (max) | PGD-20 robust: CPU / device (examples differing) |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|")?;
    for check in std::iter::once(&fresh).chain(trained.as_ref()) {
        for n in check["nets"].as_array().context("no nets")? {
            let a = &n["agreement"];
            let r = &a["pgd20_robust"];
            // Fresh nets are named by their seed; the trained ones by their temporary path.
            let name = match n["net"].as_str() {
                Some(s) if s.contains("(seed") => s.to_string(),
                _ => format!("{} (adversarially trained, one epoch)", n["arch"].as_str().unwrap_or("?")),
            };
            writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} / {} of {} ({}) |",
                e(&a["logits_rel"]),
                e(&a["input_grad_rel"]),
                e(&a["weight_grad_rel_max"]),
                e(&a["ntk64_full_rel"]),
                e(&a["search_step_weights_rel_max"]),
                r["cpu"],
                r["device"],
                r["n"],
                r["examples_differing"]
            )?;
        }
    }
    writeln!(
        s,
        "\n**Timings on the device** (awt: `awt check-device`, medians; the epoch: PGD-10 adversarial training, scaled to 60,000 images):\n"
    )?;
    writeln!(s, "| measure | PyTorch | awt | awt / PyTorch |\n|---|---|---|---|")?;
    for n in fresh["nets"].as_array().context("no nets")? {
        let arch = n["arch"].as_str().unwrap_or("?");
        let t = &n["timings"];
        let epoch = t["at_epoch"]["seconds_per_60000"].as_f64();
        for (label, ours, theirs, unit) in [
            ("PGD step, batch 128", t["pgd_step_b128_ms"].as_f64(), peer(&peers, arch, "pgd_step"), "ms"),
            ("forward + backward, batch 128", t["fwd_bwd_b128_ms"].as_f64(), peer(&peers, arch, "fwd_bwd"), "ms"),
            (
                "AWT search step, d 0.05, batch 64",
                t["awt_search_step_b64_ms"].as_f64(),
                peer(&peers, arch, "awt_step"),
                "ms",
            ),
            ("PGD-10 AT epoch, 60,000 images", epoch, peer(&peers, arch, "at_epoch"), "s"),
        ] {
            let show =
                |v: Option<f64>| if unit == "s" { v.map_or("—".into(), |x| format!("{x:.1} s")) } else { ms(v) };
            let ratio = match (ours, theirs) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".into(),
            };
            writeln!(s, "| {arch} {label} | {} | {} | {ratio} |", show(theirs), show(ours))?;
        }
    }
    let quick: Vec<PathBuf> = std::fs::read_dir(dir.join("quick"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()
        })
        .unwrap_or_default();
    writeln!(
        s,
        "\nThe quick preset with `--device {}`: {} runs finished in the check's time.",
        fresh["device"].as_str().unwrap_or("?"),
        quick.len()
    )?;
    Ok(s)
}

pub(crate) fn gpu_report(args: &[String]) -> Result<()> {
    let [dir] = args else { bail!("gpu-report takes the folder scripts/gpu-check.sh wrote (its $OUT)") };
    let text = section(Path::new(dir))?;
    let doc = root().join("docs").join("performance.md");
    crate::bench::splice(&doc, MARKERS, "On a GPU", &text)?;
    eprintln!("wrote the GPU section of {}", doc.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section reads the check's files as `awt check-device` and the peers write them.
    #[test]
    fn the_section_is_made_from_the_checks_files() {
        let dir = std::env::temp_dir().join(format!("awt-gpu-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("quick")).unwrap();
        let net = |arch: &str| {
            serde_json::json!({"net": format!("{arch} (seed 0)"), "arch": arch,
                "agreement": {"logits_rel": 1.5e-7, "input_grad_rel": 2e-7, "weight_grad_rel_max": 3e-7,
                    "ntk64_full_rel": 4e-8, "search_step_weights_rel_max": 5e-9, "same_class": "64/64",
                    "pgd20_robust": {"n": 1000, "cpu": 512, "device": 511, "examples_differing": 1},
                    "search_step_mask_entries_differing": 0},
                "timings": {"pgd_step_b128_ms": 0.5, "fwd_bwd_b128_ms": 0.25, "awt_search_step_b64_ms": 12.0,
                    "at_epoch": {"images": 10000, "seconds": 2.0, "seconds_per_60000": 12.0}}})
        };
        let check = serde_json::json!({"device": "cuda:0", "data": "fashion-mnist-mini",
            "nets": [net("lenet-300-100"), net("lenet5-caffe")]});
        std::fs::write(dir.join("check-fresh.json"), check.to_string()).unwrap();
        std::fs::write(dir.join("version.txt"), "awt 0.0.0 (abc1234)\n").unwrap();
        std::fs::write(dir.join("quick").join("a.json"), "{}").unwrap();
        let peers = [
            r#"{"peer": "torch 2.15.0", "net": "lenet-300-100", "measure": "pgd_step", "ms": 1.0}"#,
            r#"{"peer": "torch 2.15.0", "net": "lenet-300-100", "measure": "at_epoch", "images": 10000, "s": 4.0}"#,
        ];
        std::fs::write(dir.join("peers.jsonl"), peers.join("\n")).unwrap();
        let s = section(&dir).unwrap();
        assert!(
            s.contains(
                "| lenet-300-100 (seed 0) | 1.5e-7 | 2.0e-7 | 3.0e-7 | 4.0e-8 | 5.0e-9 | 512 / 511 of 1000 (1) |"
            ),
            "{s}"
        );
        assert!(s.contains("| lenet-300-100 PGD step, batch 128 | 1.00 ms | 0.50 ms | 0.50× |"), "{s}");
        assert!(s.contains("| lenet-300-100 PGD-10 AT epoch, 60,000 images | 24.0 s | 12.0 s | 0.50× |"), "{s}");
        assert!(s.contains("| lenet5-caffe forward + backward, batch 128 | — | 0.25 ms | — |"), "{s}");
        assert!(s.contains("1 runs finished"), "{s}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
