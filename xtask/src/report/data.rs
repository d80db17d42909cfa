//! The runs a reproduction report reads: each finished run folder's records, one per run name, and
//! the accuracies and cells its tables show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use awt_runs::layout;

use awt_runs::records::{Curve, DynamicsLine};

use crate::records::{EpochRecord, Manifest, SearchRecord, read_json, read_jsonl};

/// A finished run folder's records: manifest, training metrics, search log and, with
/// `[dynamics]`, the kernel dynamics against the dense run of its seed; with `[eval] curve`, the
/// security curve.
pub(super) struct RunData {
    pub(super) manifest: Manifest,
    pub(super) metrics: Vec<EpochRecord>,
    pub(super) search: Vec<SearchRecord>,
    pub(super) dynamics: Vec<DynamicsLine>,
    pub(super) curve: Option<Curve>,
}

impl RunData {
    /// The kernel distance to the dense net of the same seed at the same epoch, averaged over the
    /// epochs 0..T (the study's dynamics measure, docs/protocol.md); None without dynamics.
    pub(super) fn mean_kernel_distance(&self) -> Option<f64> {
        let n = self.dynamics.len();
        (n > 0).then(|| self.dynamics.iter().map(|e| e.rel_distance).sum::<f64>() / n as f64)
    }
}

/// A finished run folder's records (None when it has no manifest yet).
pub(super) fn read_run(p: &Path) -> Result<Option<RunData>> {
    let m = p.join(layout::MANIFEST);
    if !m.exists() {
        return Ok(None);
    }
    Ok(Some(RunData {
        manifest: crate::records::read_manifest(&m)?,
        metrics: read_jsonl(&p.join(layout::TRAIN).join(layout::METRICS))?,
        search: read_jsonl(&layout::beside(&p.join(layout::TICKET), layout::SEARCH_LOG))?,
        dynamics: read_jsonl(&p.join(layout::DYNAMICS))?,
        curve: Some(p.join(layout::CURVE)).filter(|c| c.exists()).map(|c| read_json(&c)).transpose()?,
    }))
}

/// The finished runs under `dirs`. A run name met more than once (a folder left from an older
/// configuration, or the same run on two machines) counts once: its newest manifest, the others
/// named on stderr, so that stale folders never double a row or skew a mean.
pub(super) fn collect(dirs: &[PathBuf]) -> Result<Vec<RunData>> {
    let mut by_name: BTreeMap<String, (std::time::SystemTime, PathBuf, RunData)> = BTreeMap::new();
    for d in dirs {
        let entries = std::fs::read_dir(d).with_context(|| format!("cannot read run folder {}", d.display()))?;
        let mut paths: Vec<PathBuf> = entries.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
        paths.sort();
        for p in paths {
            let Some(r) = read_run(&p)? else { continue };
            let t = std::fs::metadata(p.join(layout::MANIFEST))?.modified()?;
            match by_name.get(&r.manifest.name) {
                Some((t0, p0, _)) if *t0 >= t => {
                    eprintln!("report: {} left out, {} is newer", p.display(), p0.display())
                }
                Some((_, p0, _)) => {
                    eprintln!("report: {} left out, {} is newer", p0.display(), p.display());
                    by_name.insert(r.manifest.name.clone(), (t, p, r));
                }
                None => {
                    by_name.insert(r.manifest.name.clone(), (t, p, r));
                }
            }
        }
    }
    Ok(by_name.into_values().map(|(_, _, r)| r).collect())
}

pub(super) fn acc(r: &RunData, which: &str) -> f64 {
    match which {
        "clean" => r.manifest.clean(),
        "pgd" => r.manifest.first_attack(),
        _ => r.manifest.robust(),
    }
}

pub(super) fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s =
        if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt() } else { 0.0 };
    (m, s)
}

pub(super) fn cell(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (m, s) = mean_std(v);
    if v.len() > 1 { format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s) } else { format!("{:.1}", 100.0 * m) }
}
