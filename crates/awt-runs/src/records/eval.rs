//! The evaluation records: `eval.json` (`awt eval --json`), `curve.json` (`--eps-curve`), and the
//! attack settings both share with the manifest.

use serde::{Deserialize, Serialize};

use super::FileRecord;

/// Robust accuracy after one attack of a sequence, in an evaluation.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EvalStep {
    /// The attack (`pgd-20`, `apgd-ce`, …).
    pub attack: String,
    /// `robust_correct / n`.
    pub robust_accuracy: f64,
    /// Points still classified correctly after this attack and every one before it.
    pub robust_correct: u64,
}

/// `eval.json`: `awt eval --json`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Eval {
    /// The architecture evaluated.
    pub arch: String,
    /// `clean_correct / n`.
    pub clean_accuracy: f64,
    /// Points classified correctly without attack.
    pub clean_correct: u64,
    /// Robust counts after each attack of the sequence.
    pub cumulative: Vec<EvalStep>,
    /// The data set.
    pub data: String,
    /// Its files and their checksum status.
    pub dataset_files: Vec<FileRecord>,
    /// Where they were read from.
    pub dataset_location: String,
    /// Files read without a pinned checksum match (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_unverified: Option<Vec<String>>,
    /// Whether every file matched its pinned checksum (absent in older records: they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_verified: Option<bool>,
    /// The device the evaluation ran on when it was not the CPU (`cuda:0`); absent for the CPU
    /// (and in every record from before the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The binary's commit.
    pub git_commit: String,
    /// Points only a gradient-free attack (Square) broke (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_free_only: Option<u64>,
    /// Whether the sanity checks suspect gradient masking (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_masking_suspected: Option<bool>,
    /// The checkpoint evaluated.
    pub model: String,
    /// Points evaluated.
    pub n: u64,
    /// Points the uniform-noise check broke after every attack missed them (not counted robust);
    /// absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_broken: Option<u64>,
    /// The first point's index in the split.
    pub offset: u64,
    /// `robust_correct / n`; null without an attack.
    pub robust_accuracy: Option<f64>,
    /// Points robust to every attack and the noise check; null without an attack.
    pub robust_correct: Option<u64>,
    /// The attack settings (keys sorted here, as the binary has always written them).
    #[serde(serialize_with = "sorted_settings")]
    pub settings: EvalSettings,
    /// The split scored (`test`, `validation`, `train`); absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Training images left after the validation hold-out (only with `--validation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples_after_hold_out: Option<u64>,
    /// Training images held out as validation (only with `--validation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_held_out: Option<u64>,
    /// Seconds the evaluation took.
    pub wall_seconds: f64,
    /// The sanity checks' warnings; empty when sound.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Eval {
    /// Whether the data files were verified (records from before the field was written were).
    pub fn verified(&self) -> bool {
        self.dataset_verified.unwrap_or(true)
    }

    /// Robust accuracy; NaN without an attack.
    pub fn robust(&self) -> f64 {
        self.robust_correct.map_or(f64::NAN, |r| r as f64 / self.n as f64)
    }
}

/// `awt eval --eps-curve … --json`: a security curve, robust accuracy against ε.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Curve {
    /// The ε values, ascending.
    pub eps: Vec<f64>,
    /// Each ε's evaluation, as `awt eval --eps ε --json` writes it (its attacks alone).
    pub evals: Vec<Eval>,
    /// Per ε: points the attacks left standing there although they broke them at a smaller ε
    /// (counted broken on the curve; many mean the attack has not converged).
    pub reversals: Vec<u64>,
    /// Per ε: `robust_correct / n`.
    pub robust_accuracy: Vec<f64>,
    /// Per ε: points robust there and at every smaller ε (an adversarial example within a smaller
    /// ball lies within the larger one), so the curve never rises.
    pub robust_correct: Vec<u64>,
}

/// The attack settings of an evaluation: `eval.json`'s `settings` (keys sorted there) and a
/// manifest's `attack` (this order: the four that name the threat first).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EvalSettings {
    /// The attack or sequence (`worst`, `pgd`, `autoattack`, …).
    pub attack: String,
    /// Perturbation budget.
    pub eps: f64,
    /// PGD iterations.
    pub steps: u64,
    /// APGD iterations.
    pub apgd_steps: u64,
    /// Images per batch.
    pub batch: u64,
    /// FAB-T iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fab_steps: Option<u64>,
    /// PGD's loss.
    pub loss: String,
    /// Uniform-noise samples per point.
    pub noise_samples: u64,
    /// Threat model.
    pub norm: String,
    /// Random restarts.
    pub restarts: u64,
    /// The attacks' seed.
    pub seed: u64,
    /// Square's query budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub square_queries: Option<u64>,
    /// PGD's step size.
    pub step_size: f64,
    /// Target classes of the targeted attacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<u64>,
}

/// [`EvalSettings`] with its keys in sorted order (`eval.json`); absent options left out.
fn sorted_settings<S: serde::Serializer>(e: &EvalSettings, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("apgd_steps", &e.apgd_steps)?;
    m.serialize_entry("attack", &e.attack)?;
    m.serialize_entry("batch", &e.batch)?;
    m.serialize_entry("eps", &e.eps)?;
    if let Some(v) = e.fab_steps {
        m.serialize_entry("fab_steps", &v)?;
    }
    m.serialize_entry("loss", &e.loss)?;
    m.serialize_entry("noise_samples", &e.noise_samples)?;
    m.serialize_entry("norm", &e.norm)?;
    m.serialize_entry("restarts", &e.restarts)?;
    m.serialize_entry("seed", &e.seed)?;
    if let Some(v) = e.square_queries {
        m.serialize_entry("square_queries", &v)?;
    }
    m.serialize_entry("step_size", &e.step_size)?;
    m.serialize_entry("steps", &e.steps)?;
    if let Some(v) = e.targets {
        m.serialize_entry("targets", &v)?;
    }
    m.end()
}
