//! The dense run a comparison needs: trained before the comparison's dynamics step, and, when it
//! was recorded on another machine, trained again exactly as recorded.

use awt_runs::layout;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::exec::{self, Child, execute, wait_lock};
use super::opts::Opts;
use super::record::{keep, record_dir, recorded};
use super::verify::json_lines;
use crate::plan::{Run, Step, expand, steps};
use crate::spec::Spec;

/// A run compared with the dense run of its seed (`[dynamics]`) needs that run's per-epoch
/// checkpoints before its own dynamics step. Where they are missing — the dense run comes later in
/// the plan (`--first`), another worker is training it, or it was recorded on another machine —
/// this worker runs the dense run's steps first, waiting for its folder's lock while someone else
/// holds it. A dense run `results/` holds already is only trained again (no evaluation, not
/// recorded again), and its epochs must repeat the recorded ones ([`same_training`]); any other
/// is run whole and recorded.
pub(super) fn ensure_dense(awt: &Path, run: &Run, spec: &Spec, data: &str, child: Child, o: &Opts) -> Result<()> {
    let Some(dir) = &run.dense_dir else { return Ok(()) };
    let own = steps(run, spec, data)?;
    if !own.iter().any(|s| s.name == "dynamics" && !s.done.exists()) {
        return Ok(());
    }
    let dense = expand(spec, data, &o.base(), &|_, _| None)?
        .into_iter()
        .find(|r| &r.dir == dir)
        .with_context(|| format!("{}: its dense run {} is not in the grid", run.name, dir.display()))?;
    let dense_steps = steps(&dense, spec, data)?;
    let trained = |st: &[Step]| st.iter().filter(|s| s.name == "train").all(|s| s.done.exists());
    if trained(&dense_steps) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = wait_lock(dir, &run.name, true)?;
    if !trained(&dense_steps) {
        eprintln!("      {} needs {} trained first: running it", run.name, dense.name);
        if spec.record && recorded(&o.preset, &dense) {
            // Recorded on another machine (checkpoints are never recorded): only its training is
            // needed again, and it must be the recorded training, or every comparison with it would
            // be made against a net the records do not describe.
            let upto = dense_steps.iter().position(|s| s.name == "train").map_or(dense_steps.len(), |i| i + 1);
            exec::run_steps(awt, &dense, &dense_steps[..upto], child, &mut exec::no_wait)?;
            drop(lock);
            same_training(
                &record_dir(&o.preset, &dense).join(layout::RECORD_TRAIN_METRICS),
                &dir.join(layout::TRAIN).join(layout::METRICS),
            )?;
        } else {
            execute(lock, awt, &dense, &dense_steps, child, &o.preset, &mut exec::no_wait)?;
            if spec.record {
                keep(o, &dense)?;
            }
        }
    }
    Ok(())
}

/// Whether a run trained again (`fresh`, its `metrics.jsonl`) repeats the `recorded` training epoch
/// for epoch: the same losses and accuracies as recorded (timings aside). An error names both
/// files and the first epoch that differs.
fn same_training(recorded: &Path, fresh: &Path) -> Result<()> {
    let (a, b) = (json_lines(recorded)?, json_lines(fresh)?);
    let differs = a.iter().zip(&b).position(|(x, y)| x != y);
    if a.len() != b.len() || differs.is_some() {
        let at = differs.map_or(format!("{} epochs against {}", b.len(), a.len()), |i| {
            format!("epoch {i}: {} against the recorded {}", b[i], a[i])
        });
        bail!(
            "{} does not repeat the recorded training {} ({at}); the comparisons need the recorded net: \
             rerun it with the awt binary that recorded it (its manifest names the commit) or re-record it with --force",
            fresh.display(),
            recorded.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run compared with the dense run of its seed fails at its dynamics step while that dense
    /// run is untrained (the real `awt dynamics` refuses, as the stand-in does); `ensure_dense`
    /// trains the dense run first, even when it is outside the plan, and leaves it alone once trained.
    #[test]
    fn a_comparison_trains_its_dense_run_first() {
        let g = super::super::fixture::Grid::new("dense-first");
        let (fake, spec, o) = (&g.fake, &g.spec, &g.o);
        let (random, dense) = g.random_and_dense();
        let run = |r: &Run| {
            std::fs::create_dir_all(&r.dir).unwrap();
            let st = steps(r, spec, "d").unwrap();
            execute(wait_lock(&r.dir, "t", false).unwrap(), fake, r, &st, Child::CPU, "t", &mut exec::no_wait)
        };
        let err = format!("{:#}", run(random).unwrap_err());
        assert!(err.contains("`awt dynamics` failed") && err.contains("no epoch checkpoints"), "{err}");
        ensure_dense(fake, random, spec, "d", Child::CPU, o).unwrap();
        assert!(dense.dir.join("train/epochs").is_dir() && dense.dir.join("manifest.json").exists());
        run(random).unwrap();
        assert!(random.dir.join("dynamics.jsonl").exists());
        // Trained already: nothing runs again.
        let before = std::fs::metadata(dense.dir.join("manifest.json")).unwrap().modified().unwrap();
        ensure_dense(fake, random, spec, "d", Child::CPU, o).unwrap();
        assert_eq!(std::fs::metadata(dense.dir.join("manifest.json")).unwrap().modified().unwrap(), before);
    }

    /// A dense run trained again on a new machine is checked against its record: timings may
    /// differ, nothing else; a changed loss or a missing epoch is an error naming both files.
    #[test]
    fn a_retrained_run_must_repeat_its_record() {
        let tmp = std::env::temp_dir().join(format!("awt-same-training-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let line = |e: u32, loss: f64, secs: f64| {
            format!(
                r#"{{"epoch":{e},"train_loss":{loss},"train_acc":0.5,"clean_acc":0.78,"robust_acc":0.589,"lr":0.001,"images_per_sec":{},"seconds":{secs}}}"#,
                1000.0 / secs
            )
        };
        let rec = tmp.join("train-metrics.jsonl");
        std::fs::write(&rec, format!("{}\n{}\n", line(0, 1.3089876888275147, 24.7), line(1, 1.0226703521728515, 24.2)))
            .unwrap();
        let fresh = tmp.join("metrics.jsonl");
        std::fs::write(
            &fresh,
            format!("{}\n{}\n", line(0, 1.3089876888275147, 18.0), line(1, 1.0226703521728515, 17.1)),
        )
        .unwrap();
        same_training(&rec, &fresh).unwrap();
        std::fs::write(&fresh, format!("{}\n{}\n", line(0, 1.3089876888275147, 18.0), line(1, 1.0226703521729, 17.1)))
            .unwrap();
        let err = format!("{:#}", same_training(&rec, &fresh).unwrap_err());
        assert!(
            err.contains("epoch 1")
                && err.contains(&rec.display().to_string())
                && err.contains(&fresh.display().to_string()),
            "{err}"
        );
        std::fs::write(&fresh, format!("{}\n", line(0, 1.3089876888275147, 18.0))).unwrap();
        let err = format!("{:#}", same_training(&rec, &fresh).unwrap_err());
        assert!(err.contains("1 epochs against 2"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
