//! The files a run leaves, read into small typed records: the manifest (written by the runner),
//! and the `awt` binary's evaluation JSON, per-epoch metrics and search log.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One dataset file and its checksum status.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct FileRecord {
    pub file: String,
    pub sha256: String,
    pub status: String,
}

/// Robust correct count after each attack of a sequence.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Cumulative {
    pub attack: String,
    pub robust_correct: u64,
}

/// The attack settings of an evaluation.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct EvalSettings {
    pub attack: String,
    pub eps: f64,
    pub steps: u64,
    pub apgd_steps: u64,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// `eval.json` of `awt eval`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct EvalRecord {
    pub data: String,
    pub n: u64,
    pub clean_correct: u64,
    pub robust_correct: u64,
    pub cumulative: Vec<Cumulative>,
    pub settings: EvalSettings,
    pub dataset_location: String,
    pub dataset_files: Vec<FileRecord>,
    /// Absent in records written before the binary reported it.
    #[serde(default = "yes")]
    pub dataset_verified: bool,
    pub git_commit: String,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Points only a gradient-free attack (Square) broke; absent in older records.
    #[serde(default)]
    pub gradient_free_only: Option<u64>,
    /// The split scored (`test`, `validation`, `train`); absent in older records.
    #[serde(default)]
    pub split: Option<String>,
    /// Training images held out as validation (`awt --validation`); absent without it.
    #[serde(default)]
    pub validation_held_out: Option<u64>,
}

fn yes() -> bool {
    true
}

/// The evaluation counts a manifest keeps.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct EvalCounts {
    pub n: u64,
    pub clean_correct: u64,
    pub robust_correct: u64,
    pub cumulative: Vec<Cumulative>,
}

/// Versions of the crates that matter.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Crates {
    #[serde(rename = "candle-core")]
    pub candle_core: String,
    pub awt: String,
}

/// `manifest.json`: everything needed to know what a run was and how it was obtained.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Manifest {
    pub preset: String,
    pub name: String,
    pub arch: String,
    pub method: String,
    pub density: f64,
    pub seed: u64,
    pub config: String,
    pub config_hash: String,
    pub git_commit: String,
    pub rustc: String,
    pub crates: Crates,
    pub dataset_files: Vec<FileRecord>,
    pub data: String,
    pub dataset_location: String,
    #[serde(default = "yes")]
    pub dataset_verified: bool,
    pub threads: String,
    pub attack: EvalSettings,
    pub eval: EvalCounts,
    /// The evaluation's sanity-check warnings (gradient masking, ...); empty when sound.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub timings_seconds: BTreeMap<String, f64>,
    pub wall_seconds: f64,
    /// With a validation hold-out: the split the evaluation was scored on (`validation` or `test`)
    /// and the images held out. Absent for presets without one (they score the test split), so their
    /// manifests keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_held_out: Option<u64>,
}

impl Manifest {
    /// Clean accuracy.
    pub fn clean(&self) -> f64 {
        self.eval.clean_correct as f64 / self.eval.n as f64
    }

    /// Accuracy under the first attack of the sequence (PGD in `worst`).
    pub fn first_attack(&self) -> f64 {
        self.eval.cumulative.first().map_or(f64::NAN, |c| c.robust_correct as f64 / self.eval.n as f64)
    }

    /// Accuracy under every attack of the sequence.
    pub fn robust(&self) -> f64 {
        self.eval.robust_correct as f64 / self.eval.n as f64
    }

    /// The method with its ablation (`awt-ker1e-3`).
    pub fn variant(&self) -> String {
        crate::plan::variant_of(&self.name, &self.arch)
    }

    /// Whether the wall time covers every sitting: a run resumed by a build that did not yet carry
    /// step timings across sittings lacks the first step's time (`init`).
    pub fn timed_in_full(&self) -> bool {
        self.timings_seconds.contains_key("init")
    }
}

/// The middle value (the mean of the middle two for an even count; NaN for none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Hours of running the `left` runs (their variants) need at the recorded median wall time per run
/// of the same variant, else of its plain method, else of every recorded run; only runs timed in
/// full count. `None` when nothing is left or nothing is timed in full.
pub(crate) fn hours_left<'a>(recorded: impl IntoIterator<Item = &'a Manifest>, left: &[String]) -> Option<f64> {
    let whole: Vec<&Manifest> = recorded.into_iter().filter(|m| m.timed_in_full()).collect();
    if left.is_empty() || whole.is_empty() {
        return None;
    }
    let of = |v: &str| {
        let m = median(whole.iter().filter(|m| m.variant() == v).map(|m| m.wall_seconds).collect());
        m.is_finite().then_some(m)
    };
    let all = median(whole.iter().map(|m| m.wall_seconds).collect());
    let secs: f64 = left.iter().map(|v| of(v).or_else(|| crate::spec::plain_of(v).and_then(of)).unwrap_or(all)).sum();
    Some(secs / 3600.0)
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct EpochRecord {
    pub epoch: u64,
    pub train_loss: f64,
    pub robust_acc: Option<f64>,
    pub kernel_to_reference: Option<f64>,
}

/// One line of a search log.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SearchRecord {
    pub step: u64,
    pub kernel_distance: f64,
    pub output_distance: f64,
}

/// Reads a JSON file into `T`, naming the file on error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not the expected JSON", p.display()))
}

/// Reads a JSON-lines file (missing: empty), naming the file and line on error.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Vec<T>> {
    let Ok(text) = std::fs::read_to_string(p) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}: not the expected JSON", p.display(), i + 1))
        })
        .collect()
}

/// A manifest for tests: `acc` = (clean, PGD, worst) accuracy on 10,000 images.
#[cfg(test)]
pub(crate) fn test_manifest(
    preset: &str,
    method: &str,
    density: f64,
    seed: u64,
    acc: (f64, f64, f64),
) -> serde_json::Value {
    let n = 10_000u64;
    let c = |a: f64| (a * n as f64).round() as u64;
    let name = format!("lenet-300-100-{method}-d{density}-s{seed}");
    serde_json::json!({
        "preset": preset, "name": name, "arch": "lenet-300-100", "method": method, "density": density,
        "seed": seed, "config": "", "config_hash": "0", "git_commit": "0", "rustc": "", "data": "fashion-mnist",
        "crates": {"candle-core": "0", "awt": "0"}, "dataset_files": [], "dataset_location": "", "threads": "2",
        "attack": {"attack": "worst", "eps": 0.1, "steps": 20, "apgd_steps": 100},
        "eval": {"n": n, "clean_correct": c(acc.0), "robust_correct": c(acc.2),
                 "cumulative": [{"attack": "pgd", "robust_correct": c(acc.1)}]},
        "timings_seconds": {}, "wall_seconds": 1.0,
    })
}
