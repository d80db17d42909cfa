//! Running a grid: `reproduce`'s flags, workers taking runs from the queue (re-planned as records
//! come in), the dense run a comparison needs trained first, and — for recorded presets — each
//! finished run's small records copied into `results/<preset>/`. One run folder's execution (lock,
//! steps, timings, manifest) is `runner/exec`.

use awt_runs::layout;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::plan::{Run, Step, expand, fnv, steps};
use crate::records::{Manifest, read_json};
use crate::spec::{self, Spec};
use crate::workspace::root;

mod clock;
mod dense;
mod exec;
#[cfg(test)]
mod fixture;
mod gemm;
mod opts;
mod publish;
mod queue;
mod record;
mod sitting;
mod verify;

pub(crate) use opts::Opts;
use record::{keep, recorded};

use dense::ensure_dense;
use exec::{Child, execute, wait_lock};
use sitting::{Place, fits, to_go};

/// Chooses the dataset: the spec's when `awt data list` finds it, else its fallback.
fn choose_data(spec: &Spec, awt: &Path) -> Result<String> {
    let found = crate::workspace::data_installed(awt, &spec.data)?;
    Ok(if found { spec.data.clone() } else { spec.fallback_data.clone() })
}

/// Every architecture the preset lists is one the `awt` binary builds: asked of the binary itself
/// (`awt init` into a scratch folder, which parses the name and checks its memory), so the grid
/// fails at once, naming the preset and the name, instead of at each run's first step.
fn check_archs(spec: &Spec, awt: &Path, preset: &str) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("awt-arch-check-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = spec.archs.iter().try_for_each(|a| {
        let out = std::process::Command::new(awt)
            .args(["init", "--arch", a, "--out"])
            .arg(scratch.join("probe.safetensors"))
            .output()
            .with_context(|| format!("cannot run {}", awt.display()))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            bail!("experiments/{preset}.toml: archs: {}", why.trim().trim_start_matches("error: "));
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Runs a grid; returns its runs (none with `--list`).
pub(crate) fn run_grid(o: &Opts) -> Result<Vec<Run>> {
    let spec = spec::load(&o.preset)?;
    if o.commit && !spec.record {
        bail!(
            "--commit: preset `{}` keeps no records in results/ (only recorded presets, such as study, do)",
            o.preset
        );
    }
    if o.verify && !spec.record {
        bail!(
            "--verify: preset `{}` keeps no records in results/ to compare with (only recorded presets do)",
            o.preset
        );
    }
    let awt = crate::workspace::awt_binary()?;
    check_archs(&spec, &awt, &o.preset)?;
    let data = choose_data(&spec, &awt)?;
    let base = o.base();
    let results = root().join("results").join(&o.preset);
    let recorded = |name: &str, canonical: &str| {
        read_json::<Manifest>(&results.join(name).join(layout::MANIFEST))
            .ok()
            .filter(|m| m.config_hash == fnv(canonical))
            .map(|m| m.robust())
    };
    // The plan from the current records, narrowed to this process's part of it.
    let plan = || -> Result<Vec<Run>> {
        let mut runs = expand(&spec, &data, &base, &recorded)?;
        if let Some(names) = &o.only {
            queue::only(&mut runs, names);
        }
        if let Some(shard) = o.shard {
            runs.retain(|r| queue::in_shard(r, shard));
        }
        queue::put_first(&mut runs, &o.first);
        Ok(runs)
    };
    let runs = plan()?;
    if o.list {
        #[allow(clippy::print_stdout)]
        for r in &runs {
            println!("cargo xtask reproduce --preset {} --only {} --out {}", o.preset, r.name, base.display());
        }
        return Ok(Vec::new());
    }
    if data != spec.data {
        eprintln!("note: {} not found; using {data} instead (the report says so)", spec.data);
    }
    let total = runs.len();
    if total == 0 {
        bail!("reproduce {}: nothing to run: {}", o.preset, nothing_to_run(o));
    }
    eprintln!("reproduce {}: {total} runs on {data} into {}", o.preset, base.display());
    // Emptied before any worker starts: a worker may train another run's dense net first, in that
    // run's folder, and must not find it removed from under it.
    if o.force {
        for r in &runs {
            exec::clear(&r.dir, &r.name)?;
        }
    }
    // Only ablations with follow-up seeds can make a record change the plan.
    let replans = spec.record && spec.ablations.iter().any(|a| !a.follow_up_seeds.is_empty());
    let queue = Mutex::new(queue::Queue::new(runs));
    let errors = Mutex::new(Vec::new());
    // The cores split evenly between concurrent runs (each run's candle/rayon pool gets its share).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One run at a time takes every core, or the share a `RAYON_NUM_THREADS` given to the grid sets
    // (two grids side by side, one core each): the manifests record what the runs had.
    let inherited = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0);
    let threads = if o.jobs > 1 { Some((cores / o.jobs).max(1)) } else { inherited };
    let child = Child { threads, device: o.device };
    let started = Instant::now();
    let grid = Grid {
        o,
        spec: &spec,
        awt: &awt,
        data: &data,
        child,
        queue: &queue,
        errors: &errors,
        started,
        replans,
        plan: &plan,
    };
    std::thread::scope(|sc| {
        for _ in 0..o.jobs {
            sc.spawn(|| work(&grid));
        }
    });
    let errors = errors.into_inner().expect("errors");
    if !errors.is_empty() {
        bail!("{} run(s) failed:\n{}", errors.len(), errors.join("\n"));
    }
    Ok(finished(queue.into_inner().expect("queue"), started))
}

/// Why a grid has no run to start.
fn nothing_to_run(o: &Opts) -> String {
    match (&o.only, o.shard) {
        (Some(names), _) => format!("--only {names} names no run of the grid (`--list` prints every run's name)"),
        (None, Some((i, n))) => format!("--shard {i}/{n} holds none of the grid's runs"),
        (None, None) => "the grid is empty".to_string(),
    }
}

/// What every worker of one grid shares.
struct Grid<'a> {
    o: &'a Opts,
    spec: &'a Spec,
    awt: &'a Path,
    data: &'a str,
    child: Child,
    queue: &'a Mutex<queue::Queue>,
    errors: &'a Mutex<Vec<String>>,
    started: Instant,
    /// Whether a finished run can change the plan (ablations with follow-up seeds).
    replans: bool,
    /// The plan from the current records.
    plan: &'a (dyn Fn() -> Result<Vec<Run>> + Sync),
}

/// One worker: takes the next run that fits, runs it, and re-plans after it where a record can
/// change the plan; stops when no run is left (or none fits `--within`).
fn work(g: &Grid) {
    let (o, started) = (g.o, g.started);
    loop {
        let (next, rest) = {
            let mut q = g.queue.lock().expect("queue");
            let elapsed = started.elapsed().as_secs_f64();
            (q.next_where(|r| fits(o, r, elapsed)), q.untaken())
        };
        let Some((k, n, run)) = next else {
            if !rest.is_empty() {
                eprintln!(
                    "      a worker stops: none of the {} runs not yet started is expected to finish within --within",
                    rest.len()
                );
            }
            break;
        };
        let place = Place { k, n, rest, started };
        if let Err(e) = one(g.awt, &run, g.spec, g.data, g.child, o, &place) {
            // Said at once (a long grid goes on with its other runs), and again at the end.
            eprintln!("[{:>3}/{n}] {} — FAILED: {e:#}", k + 1, run.name);
            g.errors.lock().expect("errors").push(format!("{e:#}"));
        } else if g.replans {
            let mut q = g.queue.lock().expect("queue");
            match (g.plan)() {
                Ok(fresh) => {
                    for name in q.replan(fresh) {
                        eprintln!("{name} joins the plan: an ablation it follows up beat its plain method");
                    }
                }
                Err(e) => g.errors.lock().expect("errors").push(format!("re-planning: {e:#}")),
            }
        }
    }
}

/// Says how the sitting ended; returns the plan.
fn finished(queue: queue::Queue, started: Instant) -> Vec<Run> {
    let left = queue.untaken().len();
    let runs = queue.into_plan();
    let secs = started.elapsed().as_secs_f64();
    if left == 0 {
        eprintln!("all {} runs finished in {secs:.0} s", runs.len());
    } else {
        eprintln!(
            "{} of {} runs finished in {secs:.0} s; {left} left for a later sitting (they would not fit --within)",
            runs.len() - left,
            runs.len()
        );
    }
    runs
}

/// One run of the grid: skipped when recorded or finished, else executed (and recorded).
fn one(awt: &Path, run: &Run, spec: &Spec, data: &str, child: Child, o: &Opts, at: &Place) -> Result<()> {
    let (k, total) = (at.k, at.n);
    if o.verify && !recorded(&o.preset, run) {
        bail!(
            "{}: results/{} holds no record of it under these settings: nothing to verify against",
            run.name,
            o.preset
        );
    }
    if spec.record && !o.force && !o.verify && recorded(&o.preset, run) {
        eprintln!("[{:>3}/{total}] {} — recorded in results/, skipped", k + 1, run.name);
        return Ok(());
    }
    if run.dir.join(layout::MANIFEST).exists() {
        eprintln!("[{:>3}/{total}] {} — done earlier, skipped", k + 1, run.name);
        if o.verify {
            return verified(o, run);
        }
        return if spec.record { keep(o, run) } else { Ok(()) };
    }
    let eta = if o.verify {
        // The grid's time to go counts runs without a record; a verified run has one.
        sitting::expected_secs(&o.preset, run).map_or(String::new(), |s| {
            format!(", about {:.0} min at its variant's recorded median, a dense net it needs included", s / 60.0)
        })
    } else if spec.record {
        to_go(&o.preset, run, &at.rest, o.jobs)
    } else {
        String::new()
    };
    eprintln!(
        "[{:>3}/{total}] {} — running ({:.0} s elapsed{eta})",
        k + 1,
        run.name,
        at.started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&run.dir).with_context(|| format!("cannot create {}", run.dir.display()))?;
    let lock = wait_lock(&run.dir, &run.name, false)?;
    // Another worker may have run it meanwhile, for a run that needed it first.
    if run.dir.join(layout::MANIFEST).exists() {
        eprintln!("[{:>3}/{total}] {} — finished by another worker", k + 1, run.name);
        return if spec.record && !recorded(&o.preset, run) { keep(o, run) } else { Ok(()) };
    }
    // The dense run of the seed is needed (trained) only by the steps that read it — the dynamics,
    // HYDRA's pretrained epoch — so the steps before them run while another worker trains it.
    let reads_dense = |s: &Step| {
        run.dense_dir.as_ref().is_some_and(|d| {
            let d = d.display().to_string();
            s.args.iter().any(|a| a.starts_with(&d))
        })
    };
    let mut before = |s: &Step| if reads_dense(s) { ensure_dense(awt, run, spec, data, child, o) } else { Ok(()) };
    let t = execute(lock, awt, run, &steps(run, spec, data)?, child, &o.preset, &mut before)?;
    if spec.record {
        keep(o, run)?;
    }
    eprintln!("[{:>3}/{total}] {} — finished in {t:.0} s", k + 1, run.name);
    if o.verify {
        return verified(o, run);
    }
    Ok(())
}

/// `--verify`: the run made again against its record; an error where it differs.
fn verified(o: &Opts, run: &Run) -> Result<()> {
    let v = verify::compare(&o.preset, run)?;
    eprintln!("{}", verify::report(&run.name, &v));
    if v.differences.is_empty() {
        Ok(())
    } else {
        bail!("{} does not repeat its record in results/{}/ (above)", run.name, o.preset)
    }
}

/// `cargo xtask reproduce`: runs the grid, then writes its report.
pub(crate) fn reproduce(args: &[String]) -> Result<()> {
    let o = Opts::parse(args)?;
    let runs = run_grid(&o)?;
    if o.list || runs.is_empty() || o.shard.is_some() || o.preset == "smoke" || o.verify {
        return Ok(());
    }
    if spec::load(&o.preset)?.record {
        // Recorded presets are reported from results/ (the study report), not into the quick report.
        eprintln!("records in {}", root().join("results").join(&o.preset).display());
        crate::study::write(&root().join("docs").join("study.md"))?;
        return crate::report::refresh_quick_findings();
    }
    let dirs: Vec<std::path::PathBuf> = runs.iter().map(|r| r.dir.clone()).collect();
    crate::report::write_runs(&dirs, &report_path(&o))
}

/// Where a grid's report goes: only the quick preset's whole grid, run into its usual folder, is the
/// committed docs/reproduction.md; any other grid's (another preset, `--only` some of its runs, or
/// `--out` elsewhere, as the device check does) goes beside its runs, so a custom or partial grid
/// never replaces the committed report.
fn report_path(o: &Opts) -> std::path::PathBuf {
    if o.preset == "quick" && o.out.is_none() && o.only.is_none() {
        root().join("docs").join("reproduction.md")
    } else {
        o.base().join("report.md")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--verify` on a preset without records is refused before anything is built or run.
    #[test]
    fn verify_needs_a_recorded_preset() {
        let o = Opts::parse(&["--preset", "smoke", "--only", "x", "--verify"].map(String::from)).unwrap();
        let e = run_grid(&o).unwrap_err().to_string();
        assert!(e.contains("--verify: preset `smoke` keeps no records"), "{e}");
    }

    /// Only the quick preset writes the committed docs/reproduction.md; any other grid's report goes
    /// beside its runs.
    #[test]
    fn only_the_quick_preset_writes_the_committed_report() {
        let path = |preset: &str| report_path(&Opts::parse(&["--preset".into(), preset.into()]).ok().unwrap());
        assert_eq!(path("quick"), root().join("docs/reproduction.md"));
        assert_eq!(path("smoke"), root().join("runs/smoke/report.md"));
        let elsewhere = Opts::parse(&["--out".into(), "/tmp/q".into()]).unwrap();
        assert_eq!(report_path(&elsewhere), std::path::Path::new("/tmp/q/report.md"));
        let some = Opts::parse(&["--only".into(), "lenet-300-100-dense-d1-s0".into()]).unwrap();
        assert_eq!(report_path(&some), root().join("runs/quick/report.md"), "a part of the grid");
    }

    /// A comparison whose dense run another worker holds runs its steps up to the first that reads
    /// that run (its dynamics) meanwhile, waits there, and leaves the wait out of its wall time.
    #[test]
    fn a_comparison_runs_ahead_of_its_dense_run_until_a_step_reads_it() {
        let g = fixture::Grid::new("ahead");
        let (fake, spec, o) = (&g.fake, &g.spec, &g.o);
        let (random, dense) = g.random_and_dense();
        std::fs::create_dir_all(&dense.dir).unwrap();
        let held = wait_lock(&dense.dir, "another worker", false).unwrap();
        let place = Place { k: 0, n: 1, rest: Vec::new(), started: Instant::now() };
        std::thread::scope(|scope| {
            let comparison = scope.spawn(|| one(fake, random, spec, "d", Child::CPU, o, &place));
            let trained = random.dir.join("train/model.safetensors");
            let t0 = Instant::now();
            while !trained.exists() && t0.elapsed().as_secs() < 60 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(trained.exists(), "the comparison did not train while its dense run was held");
            std::thread::sleep(std::time::Duration::from_secs(3));
            assert!(!comparison.is_finished() && !random.dir.join("dynamics.jsonl").exists());
            // The other worker trains the dense run and lets it go.
            let dense_steps = steps(dense, spec, "d").unwrap();
            execute(held, fake, dense, &dense_steps, Child::CPU, "t", &mut exec::no_wait).unwrap();
            comparison.join().unwrap().unwrap();
        });
        assert!(random.dir.join("dynamics.jsonl").exists());
        let m: Manifest = read_json(&random.dir.join(layout::MANIFEST)).unwrap();
        assert!(m.wall_seconds < 2.0, "the wait counted: wall {} s", m.wall_seconds);
    }

    /// A malformed `--shard` names the flag and what it takes.
    #[test]
    fn a_bad_shard_names_the_flag() {
        for (v, want) in [
            ("a/b", "--shard a/b: i and n must be whole numbers"),
            ("3", "--shard takes i/n"),
            ("4/4", "--shard 4/4: need 0 ≤ i < n"),
        ] {
            let Err(e) = Opts::parse(&["--shard".into(), v.into()]) else { panic!("--shard {v} was accepted") };
            let e = format!("{e:#}");
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    /// `--device` parses to the contract's type, names itself when wrong, and a GPU grid runs one
    /// job at a time unless told otherwise.
    #[test]
    fn the_device_flag_parses_and_a_gpu_grid_queues_its_runs() {
        let parse = |a: &[&str]| Opts::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = parse(&["--device", "cuda:1"]).unwrap();
        assert_eq!((o.device, o.jobs), (awt_runs::DeviceSpec::Cuda(1), 1));
        assert_eq!(parse(&["--device", "cuda", "--jobs", "3"]).unwrap().jobs, 3);
        assert_eq!(parse(&[]).unwrap().device, awt_runs::DeviceSpec::Cpu);
        let e = format!("{:#}", parse(&["--device", "gpu"]).err().unwrap());
        assert!(e.starts_with("--device: device `gpu` is not one of"), "{e}");
    }

    /// A preset's architecture the binary refuses stops the grid before any run, naming the preset
    /// and passing on the binary's reason; names it builds pass (a stand-in binary plays `awt`).
    #[test]
    fn an_architecture_the_binary_cannot_build_stops_the_grid() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("awt-arch-check-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let awt = dir.join("awt");
        let script = "#!/bin/sh\n[ \"$3\" = lenet-300-10 ] && { echo 'error: --arch: unknown architecture `lenet-300-10`' >&2; exit 2; }\ntouch \"$5\"\n";
        std::fs::write(&awt, script).unwrap();
        std::fs::set_permissions(&awt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut spec = spec::load("quick").unwrap();
        check_archs(&spec, &awt, "quick").unwrap();
        spec.archs.push("lenet-300-10".into());
        let e = check_archs(&spec, &awt, "quick").unwrap_err().to_string();
        assert_eq!(e, "experiments/quick.toml: archs: --arch: unknown architecture `lenet-300-10`");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
