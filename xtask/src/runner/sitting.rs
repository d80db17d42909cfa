//! A sitting's clock: `--within` durations, the time a run is expected to take and whether it still
//! fits, and the time to go shown beside each run — all from the recorded median times.

use awt_runs::layout;
use std::time::Instant;

use super::opts::Opts;
use super::record::recorded;
use crate::plan::Run;
use crate::records::{Manifest, read_json};
use crate::workspace::root;

/// Where a run stands in its sitting: its position `k` in the plan of `n`, the runs no worker has
/// taken yet, and when the sitting started.
pub(super) struct Place {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) rest: Vec<Run>,
    pub(super) started: Instant,
}

/// ", the grid about H h to go": this run and the untaken ones not yet recorded, at the recorded median time
/// per run of their variants, shared among `jobs` workers (nothing where no run is recorded yet).
pub(super) fn to_go(preset: &str, run: &Run, rest: &[Run], jobs: usize) -> String {
    let Some(done) = recorded_manifests(preset) else { return String::new() };
    let left: Vec<String> = std::iter::once(run)
        .chain(rest.iter().filter(|r| !recorded(preset, r)))
        .map(|r| crate::plan::variant_of(&r.name, &r.arch))
        .collect();
    match crate::records::hours_left(&done, &left) {
        // The grid's, not this run's: a run's own time reads as far less, and was taken for it.
        Some(h) => format!(", the grid about {:.1} h to go", h / jobs as f64),
        None => String::new(),
    }
}

/// The manifests `results/<preset>/` holds (`None` where it does not exist).
pub(super) fn recorded_manifests(preset: &str) -> Option<Vec<Manifest>> {
    let entries = std::fs::read_dir(root().join("results").join(preset)).ok()?;
    Some(entries.filter_map(|e| read_json(&e.ok()?.path().join(layout::MANIFEST)).ok()).collect())
}

/// The seconds `run` is expected to take, from the recorded median time per run of its variant,
/// with its seed's dense net trained first where a comparison needs that and it is not trained
/// here yet (the recorded median of the dense runs' `init` and `train` steps); `None` without
/// records to go by.
pub(super) fn expected_secs(preset: &str, run: &Run) -> Option<f64> {
    let done = recorded_manifests(preset)?;
    let own = crate::records::hours_left(&done, &[crate::plan::variant_of(&run.name, &run.arch)])? * 3600.0;
    let dense = match &run.dense_dir {
        Some(d) if !d.join(layout::TRAIN).join(layout::MODEL).exists() => crate::records::median(
            crate::records::timed(&done)
                .into_iter()
                .filter(|m| m.method.is_dense())
                .map(|m| ["init", "train"].iter().filter_map(|s| m.timings_seconds.get(*s)).sum())
                .collect(),
        ),
        _ => 0.0,
    };
    Some(own + if dense.is_finite() { dense } else { 0.0 })
}

/// Whether `run` may start `elapsed` seconds into a sitting limited to `within` seconds: recorded
/// runs (skipped at once) and runs with no estimate always may; others when their expected time fits.
pub(super) fn fits(o: &Opts, run: &Run, elapsed: f64) -> bool {
    let Some(within) = o.within else { return true };
    if recorded(&o.preset, run) {
        return true;
    }
    expected_secs(&o.preset, run).is_none_or(|t| elapsed + t <= within)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::expand;
    use crate::runner::opts::duration;
    use crate::spec;

    /// The time to go comes from the recorded medians of the preset and is shared among the workers;
    /// a preset with no records says nothing.
    #[test]
    fn the_time_to_go_comes_from_the_records() {
        let spec = spec::load("study").unwrap();
        let plan = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
        // A seed the study does not run: never recorded, whatever the records hold.
        let awt = &Run {
            name: "lenet-300-100-awt-d0.05-s9".into(),
            ..plan.iter().find(|r| r.name == "lenet-300-100-awt-d0.05-s0").unwrap().clone()
        };
        let hours = |s: String| -> f64 {
            s.strip_prefix(", the grid about ")
                .and_then(|s| s.strip_suffix(" h to go"))
                .unwrap_or_else(|| panic!("{s}"))
                .parse()
                .unwrap()
        };
        let one = hours(to_go("study", awt, &[], 1));
        assert!((0.05..3.0).contains(&one), "one AWT run: {one} h");
        let two = hours(to_go("study", awt, std::slice::from_ref(awt), 2));
        assert!((two - one).abs() < 0.051, "two such runs on two workers take one's time: {two} against {one}");
        // A recorded run in the rest adds nothing: it will be skipped.
        let recorded = plan.iter().find(|r| r.name == "lenet-300-100-awt-d0.05-s0").unwrap().clone();
        assert_eq!(to_go("study", awt, &[recorded], 1), to_go("study", awt, &[], 1));
        assert_eq!(to_go("no-such-preset", awt, &[], 1), "");
    }

    /// `--within`: durations are read with their units and refused without; a run starts only
    /// when its expected time (its variant's recorded median, and its dense net's training where
    /// that is not here) fits in what is left; recorded runs and runs with nothing to go by always may.
    #[test]
    fn within_starts_only_runs_expected_to_fit() {
        assert_eq!(duration("--within", "2h30m").unwrap(), 9000.0);
        assert_eq!(duration("--within", "90m").unwrap(), 5400.0);
        assert_eq!(duration("--within", "1h15s").unwrap(), 3615.0);
        for bad in ["", "90", "2x", "h", "0m", "1h30"] {
            let err = duration("--within", bad).unwrap_err().to_string();
            assert!(err.contains("--within") && err.contains("not a duration"), "{bad}: {err}");
        }
        let spec = spec::load("study").unwrap();
        let plan = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
        let awt = &Run {
            name: "lenet-300-100-awt-d0.05-s9".into(),
            ..plan.iter().find(|r| r.name == "lenet-300-100-awt-d0.05-s0").unwrap().clone()
        };
        let own = to_go("study", awt, &[], 1);
        let t = expected_secs("study", awt).unwrap();
        let one: f64 = own.trim_start_matches(", the grid about ").trim_end_matches(" h to go").parse().unwrap();
        // Its dense net is not trained in /nowhere: it adds minutes to the run's own median.
        assert!(t > one * 3600.0 - 180.0 && t < one * 3600.0 + 1800.0, "{t} s against {one} h");
        let with = |w: &str| Opts::parse(&["--preset".into(), "study".into(), "--within".into(), w.into()]).unwrap();
        assert!(fits(&with("100h"), awt, 0.0));
        assert!(!fits(&with("1m"), awt, 0.0));
        assert!(!fits(&with("100h"), awt, 100.0 * 3600.0 - 1.0));
        assert!(fits(&Opts::parse(&["--preset".into(), "study".into()]).unwrap(), awt, 1e9));
        let recorded = plan.iter().find(|r| r.name == "lenet-300-100-awt-d0.05-s0").unwrap();
        assert!(fits(&with("1m"), recorded, 0.0));
        assert!(fits(
            &Opts::parse(&["--preset".into(), "no-such-preset".into(), "--within".into(), "1m".into()]).unwrap(),
            awt,
            0.0
        ));
    }
}
