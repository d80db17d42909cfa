//! Running a grid: each run's steps through the `awt` binary (finished steps skipped, interrupted
//! training resumed), a lock per run folder, the run's manifest, and — for recorded presets — its
//! small records copied into `results/<preset>/`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::plan::{Run, Step, expand, fnv, steps};
use crate::records::{EvalCounts, EvalRecord, Manifest, read_json};
use crate::root;
use crate::spec::{self, Spec};

mod queue;

/// `cargo xtask reproduce` flags.
pub(crate) struct Opts {
    pub preset: String,
    pub only: Option<String>,
    /// Name patterns whose runs go first (`--first a,b`: every run matching `a`, then `b`, then the rest).
    pub first: Vec<String>,
    pub jobs: usize,
    pub force: bool,
    pub list: bool,
    pub shard: Option<(usize, usize)>,
    pub out: Option<PathBuf>,
}

impl Opts {
    /// Parses the flags of `reproduce`.
    pub(crate) fn parse(args: &[String]) -> Result<Opts> {
        // One run per core by default: on the 2-core machine the smoke grid took 27 s as 2 runs of 1 thread
        // against 47 s as 1 run of 2 threads (small batches parallelise worse across threads than runs do).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut o = Opts {
            preset: "quick".into(),
            only: None,
            first: Vec::new(),
            jobs: cores,
            force: false,
            list: false,
            shard: None,
            out: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--preset" => o.preset = val("--preset")?,
                "--only" => o.only = Some(val("--only")?),
                "--first" => {
                    o.first =
                        val("--first")?.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
                    if o.first.is_empty() {
                        bail!("--first takes name patterns separated by commas");
                    }
                }
                "--jobs" => {
                    o.jobs = val("--jobs")?.parse().context("--jobs: not a number")?;
                    if o.jobs == 0 {
                        bail!("--jobs must be ≥ 1");
                    }
                }
                "--force" => o.force = true,
                "--list" => o.list = true,
                "--out" => o.out = Some(PathBuf::from(val("--out")?)),
                "--shard" => {
                    let v = val("--shard")?;
                    let (i, n) = v.split_once('/').context("--shard takes i/n")?;
                    let (i, n): (usize, usize) = (i.parse()?, n.parse()?);
                    if n == 0 || i >= n {
                        bail!("--shard {v}: need 0 ≤ i < n");
                    }
                    o.shard = Some((i, n));
                }
                other => bail!("reproduce: unknown flag `{other}`"),
            }
        }
        Ok(o)
    }

    /// Where the preset's run folders go.
    pub(crate) fn base(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| root().join("runs").join(&self.preset))
    }
}

/// The `awt` binary: `AWT_BIN` when set (a frozen build, so long grids are not affected by rebuilds
/// while they run), else a fresh release build.
pub(crate) fn awt_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AWT_BIN") {
        return Ok(PathBuf::from(p));
    }
    crate::cargo(&["build", "--release", "-p", "awt-cli"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    Ok(target.join("release").join("awt"))
}

/// Chooses the dataset: the spec's when `awt data list` finds it, else its fallback.
fn choose_data(spec: &Spec, awt: &Path) -> Result<String> {
    let out = Command::new(awt).args(["data", "list"]).output().context("cannot run awt data list")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some(spec.data.as_str()) && w.next() == Some("found")
    });
    Ok(if found { spec.data.clone() } else { spec.fallback_data.clone() })
}

/// `rustc -V` and the locked candle-core version.
fn tool_versions() -> (String, String) {
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap_or_default();
    let mut lines = lock.lines();
    let mut candle = String::from("unknown");
    while let Some(l) = lines.next() {
        if l == "name = \"candle-core\"" {
            candle = lines.next().unwrap_or_default().trim_start_matches("version = ").trim_matches('"').to_string();
            break;
        }
    }
    (rustc, candle)
}

/// Holds `dir/.xtask.lock` (an OS lock released when the process ends, however it ends) so that two
/// `cargo xtask` processes never run the same run folder; the second is told who holds it.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".xtask.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut f, &mut holder);
            bail!(
                "{} is in use by process {} (another cargo xtask reproduce?); split a grid between processes with --shard",
                dir.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
    }
    f.set_len(0)?;
    f.write_all(std::process::id().to_string().as_bytes())?;
    Ok(f)
}

/// A run's compute over all its sittings: seconds per step and in all (`<run>/timings.json`).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Clock {
    steps: BTreeMap<String, f64>,
    /// Wall time of the earlier sittings.
    wall_before: f64,
}

impl Clock {
    const FILE: &str = "timings.json";

    /// The earlier sittings' clock; a fresh one when there is none (or it cannot be read: timings
    /// are a record, never a reason to refuse a run).
    fn load(dir: &Path) -> Clock {
        let mut c: Clock = read_json(&dir.join(Self::FILE)).unwrap_or_default();
        // What the earlier sittings spent, this sitting's time added on top as it goes.
        c.wall_before = c.wall_before.max(c.steps.values().sum());
        c
    }

    fn wall(&self, start: Instant) -> f64 {
        self.wall_before + start.elapsed().as_secs_f64()
    }

    /// Written through a temporary file, so a kill mid-write leaves the previous clock.
    fn save(&self, dir: &Path, start: Instant) -> Result<()> {
        let now = Clock { steps: self.steps.clone(), wall_before: self.wall(start) };
        let tmp = dir.join(".timings.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&now)? + "\n")?;
        std::fs::rename(&tmp, dir.join(Self::FILE))?;
        Ok(())
    }
}

/// Runs one run's steps, skipping finished ones and resuming training and searches; writes the manifest.
fn execute(awt: &Path, run: &Run, steps: &[Step], threads: Option<usize>, preset: &str) -> Result<f64> {
    std::fs::create_dir_all(&run.dir).with_context(|| format!("cannot create {}", run.dir.display()))?;
    let _lock = lock(&run.dir)?;
    std::fs::write(run.dir.join("config.txt"), &run.canonical)?;
    let log_path = run.dir.join("run.log");
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let start = Instant::now();
    // Step timings carry across sittings (`timings.json`, flushed while a step runs), so a run
    // resumed after a kill still reports the compute it took in all.
    let mut clock = Clock::load(&run.dir);
    for s in steps {
        if s.done.exists() {
            continue;
        }
        let mut args = s.args.clone();
        if s.resume_from.as_ref().is_some_and(|p| p.exists()) {
            args.push("--resume".into());
        }
        writeln!(log, "$ awt {}", args.join(" "))?;
        let t = Instant::now();
        let mut c = Command::new(awt);
        c.args(&args)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log.try_clone()?))
            .env("AWT_OFFLINE", "1");
        if let Some(n) = threads {
            c.env("RAYON_NUM_THREADS", n.to_string());
        }
        let mut child = c.spawn().with_context(|| format!("cannot run {}", awt.display()))?;
        let before = clock.steps.get(&s.name).copied().unwrap_or(0.0);
        let mut flushed = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            if flushed.elapsed().as_secs() >= 30 {
                clock.steps.insert(s.name.clone(), before + t.elapsed().as_secs_f64());
                clock.save(&run.dir, start)?;
                flushed = Instant::now();
            }
        };
        clock.steps.insert(s.name.clone(), before + t.elapsed().as_secs_f64());
        clock.save(&run.dir, start)?;
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            bail!(
                "{}: `awt {}` failed; see {}\n{}",
                run.name,
                s.name,
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    let eval: EvalRecord = read_json(&run.dir.join("eval.json"))?;
    let (rustc, candle) = tool_versions();
    let manifest = Manifest {
        preset: preset.into(),
        name: run.name.clone(),
        arch: run.arch.clone(),
        method: run.method.clone(),
        density: run.density,
        seed: run.seed,
        config: run.canonical.clone(),
        config_hash: fnv(&run.canonical),
        // The commit the `awt` binary was built from (it may differ from the checkout's HEAD with AWT_BIN).
        git_commit: eval.git_commit.clone(),
        rustc,
        crates: crate::records::Crates { candle_core: candle, awt: env!("CARGO_PKG_VERSION").into() },
        dataset_files: eval.dataset_files.clone(),
        data: eval.data.clone(),
        dataset_location: eval.dataset_location.clone(),
        dataset_verified: eval.dataset_verified,
        threads: threads.map(|t| t.to_string()).unwrap_or_else(|| "default".into()),
        attack: eval.settings.clone(),
        eval: EvalCounts {
            n: eval.n,
            clean_correct: eval.clean_correct,
            robust_correct: eval.robust_correct,
            cumulative: eval.cumulative.clone(),
        },
        warnings: eval.warnings.clone(),
        timings_seconds: clock.steps.clone(),
        wall_seconds: clock.wall(start),
    };
    std::fs::write(run.dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(start.elapsed().as_secs_f64())
}

/// The committed records of a finished run: `results/<preset>/<run name>/`.
pub(crate) fn record_dir(preset: &str, run: &Run) -> PathBuf {
    root().join("results").join(preset).join(&run.name)
}

/// True when `results/` already holds this run's records under the same configuration.
fn recorded(preset: &str, run: &Run) -> bool {
    read_json::<Manifest>(&record_dir(preset, run).join("manifest.json"))
        .is_ok_and(|m| m.config_hash == fnv(&run.canonical))
}

/// True for a search-log line whose step re-selected the mask and changed it (kept when thinning, so
/// the records show how the mask moved).
fn changes_mask(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["mask_changes"].as_u64()).is_some_and(|c| c > 0)
}

/// Copies a finished run's small records (no checkpoints) into `results/<preset>/<run name>/`:
/// manifest, evaluation, the ticket's structure, training summary and metrics, and the search log thinned to every 50th
/// step (and the last, and every step that changed the mask), so a study's records stay a few megabytes.
fn record(preset: &str, run: &Run) -> Result<()> {
    let dst = record_dir(preset, run);
    std::fs::create_dir_all(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
    for (src, name) in [
        ("eval.json", "eval.json"),
        ("eval-aa.json", "eval-aa.json"),
        ("mask.json", "mask.json"),
        ("dynamics.jsonl", "dynamics.jsonl"),
        ("train/summary.json", "train-summary.json"),
        ("train/metrics.jsonl", "train-metrics.jsonl"),
    ] {
        let p = run.dir.join(src);
        if p.exists() {
            std::fs::copy(&p, dst.join(name)).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    if let Ok(text) = std::fs::read_to_string(run.dir.join("ticket.search.jsonl")) {
        let lines: Vec<&str> = text.lines().collect();
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| i % 50 == 0 || i + 1 == lines.len() || changes_mask(l))
            .map(|(_, l)| *l)
            .collect();
        std::fs::write(dst.join("search.jsonl"), kept.join("\n") + "\n")?;
    }
    // The manifest last: its presence marks the record complete.
    std::fs::copy(run.dir.join("manifest.json"), dst.join("manifest.json"))?;
    Ok(())
}

/// Runs a grid; returns its runs (none with `--list`).
pub(crate) fn run_grid(o: &Opts) -> Result<Vec<Run>> {
    let spec = spec::load(&o.preset)?;
    let awt = awt_binary()?;
    let data = choose_data(&spec, &awt)?;
    let base = o.base();
    let results = root().join("results").join(&o.preset);
    let recorded = |name: &str, canonical: &str| {
        read_json::<Manifest>(&results.join(name).join("manifest.json"))
            .ok()
            .filter(|m| m.config_hash == fnv(canonical))
            .map(|m| m.robust())
    };
    // The plan from the current records, narrowed to this process's part of it.
    let plan = || -> Result<Vec<Run>> {
        let mut runs = expand(&spec, &data, &base, &recorded)?;
        if let Some(p) = &o.only {
            runs.retain(|r| r.name.contains(p.as_str()));
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
    eprintln!("reproduce {}: {total} runs on {data} into {}", o.preset, base.display());
    // Only ablations with follow-up seeds can make a record change the plan.
    let replans = spec.record && spec.ablations.iter().any(|a| !a.follow_up_seeds.is_empty());
    let queue = Mutex::new(queue::Queue::new(runs));
    let errors = Mutex::new(Vec::new());
    // The cores split evenly between concurrent runs (each run's candle/rayon pool gets its share).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if o.jobs > 1 { Some((cores / o.jobs).max(1)) } else { None };
    let started = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..o.jobs {
            sc.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some((k, n, run)) = next else { break };
                    if let Err(e) = one(&awt, &run, &spec, &data, threads, o, (k, n), started) {
                        errors.lock().expect("errors").push(format!("{e:#}"));
                    } else if replans {
                        let mut q = queue.lock().expect("queue");
                        match plan() {
                            Ok(fresh) => {
                                for name in q.replan(fresh) {
                                    eprintln!("{name} joins the plan: an ablation it follows up beat its plain method");
                                }
                            }
                            Err(e) => errors.lock().expect("errors").push(format!("re-planning: {e:#}")),
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().expect("errors");
    if !errors.is_empty() {
        bail!("{} run(s) failed:\n{}", errors.len(), errors.join("\n"));
    }
    let runs = queue.into_inner().expect("queue").into_plan();
    let total = runs.len();
    eprintln!("all {total} runs finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(runs)
}

/// One run of the grid: skipped when recorded or finished, else executed (and recorded).
#[allow(clippy::too_many_arguments)]
fn one(
    awt: &Path,
    run: &Run,
    spec: &Spec,
    data: &str,
    threads: Option<usize>,
    o: &Opts,
    (k, total): (usize, usize),
    started: Instant,
) -> Result<()> {
    if o.force && run.dir.exists() {
        let _ = std::fs::remove_dir_all(&run.dir);
    }
    if spec.record && !o.force && recorded(&o.preset, run) {
        eprintln!("[{:>3}/{total}] {} — recorded in results/, skipped", k + 1, run.name);
        return Ok(());
    }
    if run.dir.join("manifest.json").exists() {
        eprintln!("[{:>3}/{total}] {} — done earlier, skipped", k + 1, run.name);
        return if spec.record { record(&o.preset, run) } else { Ok(()) };
    }
    eprintln!("[{:>3}/{total}] {} — running ({:.0} s elapsed)", k + 1, run.name, started.elapsed().as_secs_f64());
    let t = execute(awt, run, &steps(run, spec, data)?, threads, &o.preset)?;
    if spec.record {
        record(&o.preset, run)?;
    }
    eprintln!("[{:>3}/{total}] {} — finished in {t:.0} s", k + 1, run.name);
    Ok(())
}

/// `cargo xtask reproduce`: runs the grid, then writes its report.
pub(crate) fn reproduce(args: &[String]) -> Result<()> {
    let o = Opts::parse(args)?;
    let runs = run_grid(&o)?;
    if o.list || runs.is_empty() || o.shard.is_some() || o.preset == "smoke" {
        return Ok(());
    }
    if spec::load(&o.preset)?.record {
        // Recorded presets are reported from results/ (the study report), not into the quick report.
        eprintln!("records in {}", root().join("results").join(&o.preset).display());
        return crate::study::write(&root().join("docs").join("study.md"));
    }
    let dirs: Vec<std::path::PathBuf> = runs.iter().map(|r| r.dir.clone()).collect();
    crate::report::write_runs(&dirs, &root().join("docs").join("reproduction.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that fails (or is killed) in its second step and is resumed later reports the compute
    /// of both sittings: the first step's time from the first sitting, the second step's from both.
    #[test]
    fn step_timings_carry_across_sittings() {
        let dir = std::env::temp_dir().join(format!("awt-clock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = Run {
            name: "r".into(),
            dir: dir.clone(),
            arch: "lenet-300-100".into(),
            method: "dense".into(),
            density: 1.0,
            seed: 0,
            canonical: "c".into(),
            flags: Vec::new(),
            dense_dir: None,
        };
        let step = |name: &str, script: &str, done: &str| Step {
            name: name.into(),
            args: vec!["-c".into(), script.replace("DIR", &dir.to_string_lossy())],
            done: dir.join(done),
            resume_from: None,
        };
        let sh = Path::new("/bin/sh");
        let first = [step("a", "sleep 0.4; touch DIR/a.done", "a.done"), step("b", "sleep 0.3; exit 1", "b.done")];
        assert!(execute(sh, &run, &first, None, "test").is_err());
        let eval = serde_json::json!({
            "data": "fashion-mnist", "n": 10, "clean_correct": 9, "robust_correct": 5, "cumulative": [],
            "settings": {"attack": "pgd", "eps": 0.1, "steps": 20, "apgd_steps": 100},
            "dataset_location": "", "dataset_files": [], "git_commit": "0",
        });
        std::fs::write(dir.join("eval.json"), eval.to_string()).unwrap();
        let second = [step("a", "exit 1", "a.done"), step("b", "sleep 0.2; touch DIR/b.done", "b.done")];
        execute(sh, &run, &second, None, "test").unwrap();
        let m: Manifest = read_json(&dir.join("manifest.json")).unwrap();
        let (a, b) = (m.timings_seconds["a"], m.timings_seconds["b"]);
        assert!((0.4..1.5).contains(&a), "step a: {a} s");
        assert!((0.5..2.0).contains(&b), "step b counts both sittings: {b} s");
        assert!(m.wall_seconds >= a + b, "wall {} < {a} + {b}", m.wall_seconds);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
