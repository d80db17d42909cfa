//! The study's records: one recorded run (`Rec`: manifest, AutoAttack evaluation, mask, search,
//! dynamics and training lines) loaded from `results/<preset>/`, the measures a report reads, and
//! selecting runs by variant, density and seed. Shared by the study's sections.

use std::collections::BTreeSet;

use anyhow::Result;
use awt_runs::layout;
use serde::Deserialize;

use crate::records::{EvalRecord, Manifest, read_json, read_jsonl};
use crate::workspace::root;

pub(super) use awt_runs::records::{DynamicsLine as DynLine, SearchLine};

/// One line of a training run's `train-metrics.jsonl`.
pub(super) use awt_runs::records::EpochLine as TrainLine;

/// `mask.json` (`awt inspect --json`): the fields the study reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct MaskRecord {
    /// Classes whose logit has no kept incoming weight (only the bias reaches them).
    #[serde(default)]
    pub(super) classes_without_input: Option<Vec<u64>>,
    /// Each weight layer's shape and the share of it kept.
    #[serde(default)]
    pub(super) layers: Vec<MaskLayer>,
}

/// One weight layer of `mask.json`.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct MaskLayer {
    pub(super) name: String,
    pub(super) shape: Vec<u64>,
    /// The share of its weights kept, in 0..=1.
    pub(super) density: f64,
}

/// A recorded run: `results/<preset>/<run>/`.
pub(super) struct Rec {
    pub(super) m: Manifest,
    pub(super) aa: Option<EvalRecord>,
    pub(super) mask: Option<MaskRecord>,
    pub(super) search: Vec<SearchLine>,
    pub(super) dynamics: Vec<DynLine>,
    /// The final training's epochs (empty where not recorded).
    pub(super) train: Vec<TrainLine>,
}

impl Rec {
    /// The method with its ablation: the run name without the architecture and `-d…-s…`.
    pub(super) fn variant(&self) -> String {
        self.m.variant()
    }

    pub(super) fn measure(&self, which: Measure) -> Option<f64> {
        match which {
            // AutoAttack may run on a prefix of the evaluation set (`[eval] autoattack_n`).
            Measure::AutoAttack => self.aa.as_ref().and_then(|a| Some(a.robust_correct? as f64 / a.n as f64)),
            // What Square alone broke after AutoAttack's gradient attacks, as a fraction of its images.
            Measure::SquareOnly => self.aa.as_ref().and_then(|a| Some(a.gradient_free_only? as f64 / a.n as f64)),
            Measure::Clean => Some(self.m.clean()),
            Measure::Pgd => Some(self.m.first_attack()).filter(|v| v.is_finite()),
            Measure::Worst => Some(self.m.robust()),
        }
    }

    /// Mean of a dynamics measure over the trained epochs (epoch ≥ 1).
    pub(super) fn mean_dynamics(&self, f: impl Fn(&DynLine) -> Option<f64>) -> Option<f64> {
        over_training(&self.dynamics, f)
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Measure {
    Clean,
    Pgd,
    Worst,
    AutoAttack,
    SquareOnly,
}

pub(super) fn load(preset: &str) -> Result<Vec<Rec>> {
    let dir = root().join("results").join(preset);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in entries {
        let p = e?.path();
        if !p.join(layout::MANIFEST).exists() {
            continue;
        }
        let aa = p.join(layout::EVAL_AA);
        out.push(Rec {
            m: crate::records::read_manifest(&p.join(layout::MANIFEST))?,
            aa: if aa.exists() { Some(read_json(&aa)?) } else { None },
            mask: if p.join(layout::MASK).exists() { Some(read_json(&p.join(layout::MASK))?) } else { None },
            search: read_jsonl(&p.join(layout::RECORD_SEARCH))?,
            dynamics: read_jsonl(&p.join(layout::DYNAMICS))?,
            train: read_jsonl(&p.join(layout::RECORD_TRAIN_METRICS))?,
        });
    }
    out.sort_by(|a, b| a.m.name.cmp(&b.m.name));
    Ok(out)
}

/// The runs of one variant at one density (the dense net's at any density).
pub(super) fn runs_of<'a>(recs: &'a [Rec], variant: &'a str, density: f64) -> impl Iterator<Item = &'a Rec> + 'a {
    recs.iter()
        .filter(move |r| r.variant() == variant && (variant == "dense" || (r.m.density.get() - density).abs() < 1e-12))
}

/// (seed, value) of one variant at one density (the dense net at any density).
pub(super) fn by_seed(recs: &[Rec], variant: &str, density: f64, f: impl Fn(&Rec) -> Option<f64>) -> Vec<(u64, f64)> {
    runs_of(recs, variant, density).filter_map(|r| Some((r.m.seed, f(r)?))).collect()
}

pub(super) fn values(v: &[(u64, f64)]) -> Vec<f64> {
    v.iter().map(|x| x.1).collect()
}

/// Mean over the trained epochs (epoch ≥ 1): the claims' average too.
pub(super) fn over_training(dy: &[DynLine], f: impl Fn(&DynLine) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = dy.iter().filter(|e| e.epoch >= 1).filter_map(f).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Every variant recorded, in report order (methods, then their ablations).
pub(super) fn variants(recs: &[Rec]) -> Vec<String> {
    let order = crate::spec::METHODS;
    let mut v: Vec<String> = recs.iter().map(Rec::variant).collect::<BTreeSet<_>>().into_iter().collect();
    v.sort_by_key(|x| (order.iter().position(|m| m == x).unwrap_or(order.len()), x.clone()));
    v
}
