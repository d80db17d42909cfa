//! The files of a run folder, each name spelled here once. A grid run's folder
//! (`runs/<preset>/<run>-<hash>/`) holds the binary's outputs; its record
//! (`results/<preset>/<run>/`) holds the small files [`RECORD_COPIES`] names, the thinned search log
//! and the manifest, which is written last and marks the record complete.

use std::path::{Path, PathBuf};

/// The runner's record of a finished run (written last: its presence marks the run finished).
pub const MANIFEST: &str = "manifest.json";
/// `awt eval --json` of the final network.
pub const EVAL: &str = "eval.json";
/// `awt eval --json` with AutoAttack, where the preset asks for it.
pub const EVAL_AA: &str = "eval-aa.json";
/// `awt eval --eps-curve --json`: the security curve, where the preset asks for one.
pub const CURVE: &str = "curve.json";
/// `awt inspect --json` of the ticket.
pub const MASK: &str = "mask.json";
/// `awt dynamics --out`: one line per epoch.
pub const DYNAMICS: &str = "dynamics.jsonl";
/// The runner's clock over all sittings.
pub const TIMINGS: &str = "timings.json";
/// The seeded initialisation.
pub const INIT: &str = "init.safetensors";
/// The sparse network before training.
pub const TICKET: &str = "ticket.safetensors";
/// Another method's mask of the same initialisation, whose per-layer counts a search keeps (an
/// ablation's `layers-from`, `awt ticket --layer-densities-from`).
pub const LAYERS: &str = "layers.safetensors";
/// The folder of the final training (`awt train --out`).
pub const TRAIN: &str = "train";
/// The runner's lock on a run folder.
pub const RUNNER_LOCK: &str = ".xtask.lock";

/// In a training folder: the configuration a fresh run writes.
pub const CONFIG: &str = "config.toml";
/// In a training folder: one line per epoch.
pub const METRICS: &str = "metrics.jsonl";
/// In a training folder: the per-epoch checkpoint a resumed run starts from.
pub const STATE: &str = "state.safetensors";
/// In a training folder: the trained network.
pub const MODEL: &str = "model.safetensors";
/// In a training folder: the best epoch's network (`--keep-best`).
pub const BEST: &str = "best.safetensors";
/// In a training folder: the run's summary.
pub const SUMMARY: &str = "summary.json";
/// In a training folder: the networks after each epoch (`--save-epochs`).
pub const EPOCHS: &str = "epochs";
/// In a training folder's `epochs/`: the network after `epoch` epochs (1-based).
pub fn epoch_file(epoch: usize) -> String {
    format!("epoch-{epoch:03}.safetensors")
}
/// A writer's lock on its folder.
pub const LOCK: &str = ".lock";
/// Every file `awt train` writes into its folder (an input may be none of them).
pub const TRAIN_FILES: [&str; 7] = [CONFIG, METRICS, STATE, MODEL, BEST, SUMMARY, LOCK];

/// Suffix of a search's log beside its ticket (`t.safetensors` → `t.safetensors.search.jsonl`).
pub const SEARCH_LOG: &str = "search.jsonl";
/// Suffix of a search's resumable state beside its ticket.
pub const SEARCH_STATE: &str = "search.state.safetensors";

/// In a record: the search log, thinned.
pub const RECORD_SEARCH: &str = "search.jsonl";
/// What a record copies from the run folder, as (run-folder path, record file name); each only
/// where the run wrote it.
pub const RECORD_COPIES: [(&str, &str); 7] = [
    (EVAL, EVAL),
    (EVAL_AA, EVAL_AA),
    (MASK, MASK),
    (DYNAMICS, DYNAMICS),
    ("train/summary.json", "train-summary.json"),
    ("train/metrics.jsonl", "train-metrics.jsonl"),
    (CURVE, CURVE),
];
/// In a record: the final training's metrics.
pub const RECORD_TRAIN_METRICS: &str = RECORD_COPIES[5].1;

/// A helper file or folder of the output `out`: its file name with `.suffix` appended
/// (`t.v1` → `t.v1.search.jsonl`), so that distinct outputs never share a helper.
pub fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{suffix}"));
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_copies_come_from_the_run_folders_files() {
        assert_eq!(RECORD_COPIES[4].0, format!("{TRAIN}/{SUMMARY}"));
        assert_eq!(RECORD_COPIES[5].0, format!("{TRAIN}/{METRICS}"));
        assert_eq!(beside(Path::new("r/t.v1"), SEARCH_LOG), Path::new("r/t.v1.search.jsonl"));
    }
}
