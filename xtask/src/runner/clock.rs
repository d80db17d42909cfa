//! A run's clock: its compute per step and in all over its sittings, less the time it stood
//! stopped (`kill -STOP`) or waited for another run (`<run>/timings.json`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use awt_runs::layout;

use crate::records::read_json;

/// A run's compute over all its sittings: seconds per step and in all (`<run>/timings.json`).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Clock {
    pub(super) steps: BTreeMap<String, f64>,
    /// Wall time of the earlier sittings.
    pub(super) wall_before: f64,
    /// Time the earlier sittings stood stopped (left out of `wall_before` and the steps).
    #[serde(default)]
    pub(super) stopped_before: f64,
    /// This sitting's time spent stopped (`kill -STOP`, a suspended machine): not compute, so
    /// neither a step's time nor the run's wall time counts it.
    #[serde(skip)]
    pub(super) paused: f64,
    /// This sitting's time spent waiting before a step for what it needs (another run's training):
    /// not this run's compute either, and not a stop.
    #[serde(skip)]
    pub(super) waited: f64,
}

/// The runner polls a running step every `POLL`; a poll that took longer than `STOPPED` means the
/// runner (and, stopped with it, its step) did not run meanwhile — the grid is paused with
/// `kill -STOP` while benchmarks run — and only `POLL` of it counts.
pub(super) const POLL: std::time::Duration = std::time::Duration::from_millis(200);
pub(super) const STOPPED: f64 = 10.0;

/// The part of one poll's `dt` seconds that was spent stopped (0 for an ordinary poll).
pub(super) fn stopped_part(dt: f64) -> f64 {
    if dt > STOPPED { dt - POLL.as_secs_f64() } else { 0.0 }
}

impl Clock {
    const FILE: &str = layout::TIMINGS;

    /// The earlier sittings' clock; a fresh one when there is none (or it cannot be read: timings
    /// are a record, never a reason to refuse a run).
    pub(super) fn load(dir: &Path) -> Clock {
        let mut c: Clock = read_json(&dir.join(Self::FILE)).unwrap_or_default();
        // What the earlier sittings spent, this sitting's time added on top as it goes.
        c.wall_before = c.wall_before.max(c.steps.values().sum());
        c
    }

    /// Time stood stopped over all sittings.
    pub(super) fn stopped(&self) -> f64 {
        self.stopped_before + self.paused
    }

    pub(super) fn wall(&self, start: Instant) -> f64 {
        self.wall_before + start.elapsed().as_secs_f64() - self.paused - self.waited
    }

    /// Written through a temporary file, so a kill mid-write leaves the previous clock.
    pub(super) fn save(&self, dir: &Path, start: Instant) -> Result<()> {
        let now = Clock {
            steps: self.steps.clone(),
            wall_before: self.wall(start),
            stopped_before: self.stopped(),
            paused: 0.0,
            waited: 0.0,
        };
        crate::workspace::write_atomic(&dir.join(Self::FILE), serde_json::to_string_pretty(&now)? + "\n")
    }
}
