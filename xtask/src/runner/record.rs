//! A finished run's records in `results/<preset>/<run name>/`: whether they are there under the
//! run's settings, copying them (the search log thinned), and with `--commit` committing them.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use awt_runs::layout;

use crate::plan::{Run, fnv};
use crate::records::{Manifest, SearchRecord, read_json};
use crate::workspace::root;

use super::opts::Opts;
use super::publish;

/// The committed records of a finished run: `results/<preset>/<run name>/`.
pub(crate) fn record_dir(preset: &str, run: &Run) -> PathBuf {
    root().join("results").join(preset).join(&run.name)
}

/// True when `results/` already holds this run's records under the same configuration.
pub(super) fn recorded(preset: &str, run: &Run) -> bool {
    read_json::<Manifest>(&record_dir(preset, run).join(layout::MANIFEST))
        .is_ok_and(|m| m.config_hash == fnv(&run.canonical))
}

/// True for a search-log line whose step re-selected the mask and changed it (kept when thinning, so
/// the records show how the mask moved).
fn changes_mask(line: &str) -> bool {
    serde_json::from_str::<SearchRecord>(line).is_ok_and(|l| l.mask_changes > 0)
}

/// [`record`], then with `--commit` the commit of the record and the regenerated report. One worker
/// at a time, of this process and of any other grid of this checkout ([`publish_lock`]): a commit
/// must not take another run's record half copied, nor a report older than the records it commits.
/// With `--verify` nothing is kept: the runs made again are compared with their records instead.
pub(super) fn keep(o: &Opts, run: &Run) -> Result<()> {
    if o.verify {
        return Ok(());
    }
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _all = publish_lock(&root().join("runs"))?;
    record(&o.preset, run)?;
    if o.commit {
        publish::publish(&o.preset, &run.name);
    }
    Ok(())
}

/// The lock every grid of a checkout takes to copy a record and commit it with the report
/// (`<runs>/.publish.lock`), waited for: two grids side by side (the study's two lanes) would
/// otherwise regenerate the report while the other copies a record, and commit it stale.
fn publish_lock(runs: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(runs).with_context(|| format!("cannot create {}", runs.display()))?;
    let path = runs.join(".publish.lock");
    loop {
        match awt_runs::lock::try_lock(&path) {
            Ok(f) => return Ok(f),
            Err(awt_runs::lock::LockError::Held(_)) => std::thread::sleep(std::time::Duration::from_millis(200)),
            Err(e) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// Copies a finished run's small records (no checkpoints) into `results/<preset>/<run name>/`:
/// manifest, evaluation, the ticket's structure, training summary and metrics, and the search log thinned to every 50th
/// step (and the last, and every step that changed the mask), so a study's records stay a few megabytes.
fn record(preset: &str, run: &Run) -> Result<()> {
    let dst = record_dir(preset, run);
    std::fs::create_dir_all(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
    for (src, name) in layout::RECORD_COPIES {
        let p = run.dir.join(src);
        if p.exists() {
            std::fs::copy(&p, dst.join(name)).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    if let Ok(text) = std::fs::read_to_string(layout::beside(&run.dir.join(layout::TICKET), layout::SEARCH_LOG)) {
        let lines: Vec<&str> = text.lines().collect();
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| i % 50 == 0 || i + 1 == lines.len() || changes_mask(l))
            .map(|(_, l)| *l)
            .collect();
        std::fs::write(dst.join(layout::RECORD_SEARCH), kept.join("\n") + "\n")?;
    }
    // The manifest last, whole or not at all: its presence marks the record complete.
    crate::workspace::write_atomic(&dst.join(layout::MANIFEST), std::fs::read(run.dir.join(layout::MANIFEST))?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A grid that finds the record lock held waits until it is released, then takes it.
    #[test]
    fn a_second_grid_waits_for_the_record_lock() {
        let dir = std::env::temp_dir().join(format!("awt-publish-lock-{}", std::process::id()));
        let held = super::publish_lock(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || {
            let f = super::publish_lock(&d).unwrap();
            tx.send(()).unwrap();
            drop(f);
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(600)).is_err(), "took a held lock");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("never took the released lock");
        waiter.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
