//! The records of a run, written by the `awt` binary (evaluation, mask report, search and
//! dynamics lines) or the runner (manifest), and read back by xtask. Field order is serialisation
//! order (the evaluation's settings, shared with the manifest, are written sorted by their own
//! serialiser): the binary's records keep their keys sorted, as every record under `results/` has them, so
//! re-serialising a committed record gives its bytes back (tested on all of them). Fields that
//! older records lack are `Option`s left out when absent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Density, Method};

mod eval;
pub use eval::{Curve, Eval, EvalSettings, EvalStep};

/// One dataset file and its checksum status (`verified`, …).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct FileRecord {
    /// The file's name.
    pub file: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// `verified` when it matched the pinned checksum.
    pub status: String,
}

/// One layer of a mask report.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct MaskLayer {
    /// Fraction of the layer's weights kept.
    pub density: f64,
    /// Inputs all of whose outgoing weights are pruned.
    pub inputs_without_output: Option<Vec<u64>>,
    /// The weight tensor's name.
    pub name: String,
    /// Outputs all of whose incoming weights are pruned.
    pub outputs_without_input: Option<Vec<u64>>,
    /// The weight tensor's shape.
    pub shape: Vec<u64>,
}

/// `mask.json`: `awt inspect --json`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct MaskReport {
    /// The architecture.
    pub arch: String,
    /// Classes whose logit has no kept incoming weight (only the bias reaches them); null when the
    /// classifier is unmasked.
    pub classes_without_input: Option<Vec<u64>>,
    /// Overall weight density.
    pub density: f64,
    /// The masked layers, in forward order.
    pub layers: Vec<MaskLayer>,
    /// The checkpoint's metadata.
    pub meta: BTreeMap<String, String>,
    /// The checkpoint inspected.
    pub model: String,
    /// Parameters in all.
    pub parameters: u64,
    /// Maskable weights.
    pub weights: u64,
}

/// One step of a ticket search (`<ticket>.search.jsonl`, one per line).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct SearchLine {
    /// Step (0-based).
    pub step: u64,
    /// Total loss.
    pub loss: f64,
    /// λ_ker · kernel MSE.
    pub kernel_term: f64,
    /// Output MSE.
    pub output_term: f64,
    /// (λ_l2/d) Σ‖m⊙W‖².
    pub l2_term: f64,
    /// ‖Θ_s − Θ_T‖/‖Θ_T‖ on this batch.
    pub kernel_distance: f64,
    /// ‖f_s − f_T‖/‖f_T‖ on this batch.
    pub output_distance: f64,
    /// Weights whose mask bit changed at this step (0 except at re-selections).
    pub mask_changes: u64,
}

/// One epoch of a training run (`metrics.jsonl`, one per line; `train-metrics.jsonl` in a record).
/// Non-finite numbers are written as null and read back as NaN.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EpochLine {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss on the (adversarial) batches.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Accuracy on the (adversarial) training batches.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_acc: f64,
    /// Clean accuracy on the evaluation subset.
    #[serde(deserialize_with = "nan_if_null")]
    pub clean_acc: f64,
    /// PGD accuracy on the evaluation subset (NaN, written as null, when `eval_steps` is 0).
    #[serde(deserialize_with = "nan_if_null")]
    pub robust_acc: f64,
    /// Learning rate at the epoch's last step.
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Training throughput.
    #[serde(deserialize_with = "nan_if_null")]
    pub images_per_sec: f64,
    /// Wall time of the epoch (training and evaluation).
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds: f64,
    /// Extra numbers added by hooks ([`EpochLine::KERNEL_TO_REFERENCE`], ...), by name.
    #[serde(flatten, deserialize_with = "nan_map")]
    pub extra: BTreeMap<String, f64>,
}

impl EpochLine {
    /// `extra` key: the kernel's relative distance to the reference (dense) net's initial kernel.
    pub const KERNEL_TO_REFERENCE: &str = "kernel_to_reference";
    /// `extra` key: the kernel's relative distance to its own initial kernel.
    pub const KERNEL_TO_INITIAL: &str = "kernel_to_initial";

    /// A finite `extra` number, if the line has it.
    pub fn extra(&self, key: &str) -> Option<f64> {
        self.extra.get(key).copied().filter(|v| v.is_finite())
    }
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// One epoch of `awt dynamics` (`dynamics.jsonl`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct DynamicsLine {
    /// Epoch (0 = initialisation).
    pub epoch: u64,
    /// ‖Θ_s − Θ_d‖ / ‖Θ_d‖ (Frobenius), both at this epoch, on the probe's PGD examples.
    pub rel_distance: f64,
    /// ⟨Θ_s, Θ_d⟩ / (‖Θ_s‖ ‖Θ_d‖).
    pub alignment: f64,
    /// ‖Θ_s,t − Θ_s,0‖ / ‖Θ_s,0‖ on the same points: how far the sparse net's kernel moved.
    pub sparse_change: f64,
    /// The same for the dense net.
    pub dense_change: f64,
    /// Training loss of the sparse net minus the dense net's over this epoch (none at epoch 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_gap: Option<f64>,
}

/// Robust count after one attack, in a manifest.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Cumulative {
    /// The attack.
    pub attack: String,
    /// Points still robust after it.
    pub robust_correct: u64,
}

/// The evaluation counts a manifest keeps.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EvalCounts {
    /// Points evaluated.
    pub n: u64,
    /// Clean correct.
    pub clean_correct: u64,
    /// Robust to everything.
    pub robust_correct: u64,
    /// After each attack.
    pub cumulative: Vec<Cumulative>,
    /// Points the uniform-noise check broke after the last attack (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_broken: Option<u64>,
}

/// Versions of the crates that matter.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Crates {
    /// candle-core's version.
    #[serde(rename = "candle-core")]
    pub candle_core: String,
    /// The workspace's version.
    pub awt: String,
}

/// `manifest.json`: everything needed to know what a run was and how it was obtained.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Manifest {
    /// The preset of the grid.
    pub preset: String,
    /// The run's name ([`crate::RunName`]).
    pub name: String,
    /// The architecture.
    pub arch: String,
    /// The method.
    pub method: Method,
    /// The density.
    pub density: Density,
    /// The seed.
    pub seed: u64,
    /// The canonical settings string.
    pub config: String,
    /// Its [`crate::fnv`] hash.
    pub config_hash: String,
    /// The commit of the binary that ran.
    pub git_commit: String,
    /// `rustc -V`.
    pub rustc: String,
    /// Versions.
    pub crates: Crates,
    /// The data files.
    pub dataset_files: Vec<FileRecord>,
    /// The data set.
    pub data: String,
    /// Where it was read from.
    pub dataset_location: String,
    /// Whether every file matched its pinned checksum (records from before the field: they did).
    #[serde(default = "yes")]
    pub dataset_verified: bool,
    /// Threads the binary used.
    pub threads: String,
    /// The evaluation's attack settings.
    pub attack: EvalSettings,
    /// The evaluation's counts.
    pub eval: EvalCounts,
    /// The evaluation's sanity-check warnings (gradient masking, ...); empty when sound.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Seconds per step, over all sittings.
    pub timings_seconds: BTreeMap<String, f64>,
    /// Seconds in all.
    pub wall_seconds: f64,
    /// With a validation hold-out: the split the evaluation was scored on (`validation` or `test`).
    /// Absent for presets without one (they score the test split), so their manifests keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// The CPU (model, vector instructions) the run computed on; absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// The summation order of that CPU's matrix products as the run's binary measured it (`awt
    /// numerics`: gemm's k-blocks and small-product lanes, which decide whether another machine gives
    /// the same bits); absent in older records and where the binary has no such command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm: Option<String>,
    /// Training images held out as validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_held_out: Option<u64>,
    /// The device the evaluation ran on when it was not the CPU (`cuda:0`); absent for the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Seconds the run stood stopped (the grid paused with `kill -STOP`, a suspended machine), left
    /// out of its timings; absent in records from before pauses were left out, whose timings may
    /// include them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_seconds: Option<f64>,
}

fn yes() -> bool {
    true
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
        crate::variant_in(&self.name, &self.arch).to_string()
    }

    /// Whether the wall time covers every sitting: a run resumed by a build that did not yet carry
    /// step timings across sittings lacks the first step's time (`init`).
    pub fn timed_in_full(&self) -> bool {
        self.timings_seconds.contains_key("init")
    }

    /// Whether the timings leave out time spent stopped (records that say how long they stood).
    pub fn pause_free(&self) -> bool {
        self.stopped_seconds.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Non-finite numbers of an epoch line are written as null and read back as NaN, hook numbers
    /// included; key order is the struct's, then the hooks' sorted.
    #[test]
    fn epoch_lines_carry_nan_as_null() {
        let mut m = EpochLine {
            epoch: 3,
            train_loss: 0.5,
            train_acc: 0.8,
            clean_acc: 0.7,
            robust_acc: f64::NAN,
            lr: 1e-3,
            images_per_sec: 100.0,
            seconds: 2.0,
            extra: BTreeMap::new(),
        };
        m.extra.insert(EpochLine::KERNEL_TO_REFERENCE.into(), 0.25);
        m.extra.insert(EpochLine::KERNEL_TO_INITIAL.into(), f64::NAN);
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains(r#""robust_acc":null"#)
                && text.ends_with(r#""kernel_to_initial":null,"kernel_to_reference":0.25}"#),
            "{text}"
        );
        let back: EpochLine = serde_json::from_str(&text).unwrap();
        assert!(back.robust_acc.is_nan() && back.extra[EpochLine::KERNEL_TO_INITIAL].is_nan());
        assert_eq!(
            (back.extra(EpochLine::KERNEL_TO_REFERENCE), back.extra(EpochLine::KERNEL_TO_INITIAL)),
            (Some(0.25), None)
        );
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
