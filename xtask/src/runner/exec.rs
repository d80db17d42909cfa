//! Running one run folder: its lock (two processes never run the same folder; workers of one
//! process wait for each other), its steps through the `awt` binary (finished steps skipped,
//! interrupted training and searches resumed), step timings kept across sittings, and its manifest.

use awt_runs::{DeviceSpec, layout};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::clock::{Clock, POLL, stopped_part};
use crate::plan::{Run, Step, fnv};
use crate::records::{Cumulative, EvalCounts, EvalRecord, Manifest, read_json};
use crate::workspace::root;

/// `rustc -V` and the locked candle-core version.
/// The CPU the run computed on: its model name and the widest vector instructions the matrix
/// kernels pick at run time (`avx512f` or `avx2`), which change floating-point results in the last
/// digits; None where /proc/cpuinfo cannot be read.
pub(crate) fn cpu() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let model = info.lines().find(|l| l.starts_with("model name"))?.split_once(':')?.1.trim().to_string();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let simd = if has("avx512f") {
        "avx512f"
    } else if has("avx2") {
        "avx2"
    } else {
        "no avx2"
    };
    Some(format!("{model}, {simd}"))
}

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
/// `cargo xtask` processes never run the same run folder: without `any_holder` the second is told who
/// holds it. While this process (another worker, running a dense run that a comparison needs first)
/// or, with `any_holder`, anyone holds it, waits (polling every second); `who` is named in the line that says so.
pub(super) fn wait_lock(dir: &Path, who: &str, any_holder: bool) -> Result<std::fs::File> {
    let mut said = false;
    loop {
        match try_lock(dir)? {
            Ok(f) => return Ok(f),
            // An empty holder has taken the lock but not yet written its id.
            Err(holder) if any_holder || holder.is_empty() || holder == std::process::id().to_string() => {
                if !said {
                    eprintln!("      {who} waits for {} (in use by process {holder})", dir.display());
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(holder) => bail!(
                "{} is in use by process {holder} (another cargo xtask reproduce?); split a grid between processes with --shard",
                dir.display()
            ),
        }
    }
}

/// Empties a run folder for `--force` under its lock, keeping the lock file: before any worker
/// starts, so no worker (one training a comparison's dense run first) can be using it; a folder
/// another process holds is refused ([`wait_lock`]).
pub(super) fn clear(dir: &Path, who: &str) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let _lock = wait_lock(dir, who, false)?;
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        if p.file_name().is_some_and(|n| n == awt_runs::layout::RUNNER_LOCK) {
            continue;
        }
        let gone = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        gone.with_context(|| format!("--force: cannot remove {}", p.display()))?;
    }
    Ok(())
}

/// The lock of [`wait_lock`], or the process id of whoever holds it (another process, or another worker
/// of this one).
fn try_lock(dir: &Path) -> Result<std::result::Result<std::fs::File, String>> {
    let path = dir.join(awt_runs::layout::RUNNER_LOCK);
    match awt_runs::lock::try_lock(&path) {
        Ok(f) => Ok(Ok(f)),
        Err(awt_runs::lock::LockError::Held(holder)) => Ok(Err(holder)),
        Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// How each `awt` child process runs: its share of the cores (`RAYON_NUM_THREADS`; `None`: all)
/// and its device (`--device`, given to every step when it is not the CPU).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Child {
    pub threads: Option<usize>,
    pub device: DeviceSpec,
}

impl Child {
    /// All the cores, on the CPU.
    #[cfg(test)]
    pub const CPU: Child = Child { threads: None, device: DeviceSpec::Cpu };
}

/// What a run waits for ahead of a step it is about to run ([`run_steps`]), outside that step's
/// clock and the run's wall time: the dense run a comparison's dynamics reads.
pub(super) type Before<'a> = &'a mut dyn FnMut(&Step) -> Result<()>;

/// A run that waits for nothing.
pub(super) fn no_wait(_: &Step) -> Result<()> {
    Ok(())
}

/// Runs one run's steps, skipping finished ones and resuming training and searches; writes the
/// manifest. `_lock` is the run folder's ([`wait_lock`]), released when this returns.
pub(super) fn execute(
    _lock: std::fs::File,
    awt: &Path,
    run: &Run,
    steps: &[Step],
    child: Child,
    preset: &str,
    before: Before,
) -> Result<f64> {
    let (clock, start) = run_steps(awt, run, steps, child, before)?;
    write_manifest(run, preset, child.threads, &clock, start, super::gemm::gemm_order(awt))
}

/// Runs `steps` of `run` (the caller holds the folder's lock), skipping finished ones and resuming
/// training and searches, calling `before` ahead of each step it runs; no manifest. Returns the
/// run's clock and when this sitting started.
pub(super) fn run_steps(
    awt: &Path,
    run: &Run,
    steps: &[Step],
    child: Child,
    before: Before,
) -> Result<(Clock, Instant)> {
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
        let w = Instant::now();
        before(s)?;
        clock.waited += w.elapsed().as_secs_f64();
        let mut args = s.args.clone();
        if s.resume_from.as_ref().is_some_and(|p| p.exists()) {
            args.push("--resume".into());
        }
        if child.device != DeviceSpec::Cpu {
            args.extend(["--device".into(), child.device.to_string()]);
        }
        writeln!(log, "$ awt {}", args.join(" "))?;
        let logged = std::fs::metadata(&log_path)?.len();
        let t = Instant::now();
        let mut c = Command::new(awt);
        c.args(&args)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log.try_clone()?))
            .env("AWT_OFFLINE", "1");
        if let Some(n) = child.threads {
            c.env("RAYON_NUM_THREADS", n.to_string());
        }
        let mut child = c.spawn().with_context(|| format!("cannot run {}", awt.display()))?;
        let before = clock.steps.get(&s.name).copied().unwrap_or(0.0);
        // From `t`, so a stop that lands before the first poll is seen by it.
        let (mut flushed, mut polled, mut stopped) = (Instant::now(), t, 0.0);
        // A stop is seen at the next poll; the poll after the loop sees one that landed just
        // before the step ended (the step finishing while the runner stood still).
        let mut poll = |polled: &mut Instant, stopped: &mut f64, clock: &mut Clock| -> Result<()> {
            let gap = stopped_part(polled.elapsed().as_secs_f64());
            *polled = Instant::now();
            if gap > 0.0 {
                (*stopped, clock.paused) = (*stopped + gap, clock.paused + gap);
                writeln!(log, "(stopped for {gap:.0} s: not counted in this step's time)")?;
            }
            Ok(())
        };
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            std::thread::sleep(POLL);
            poll(&mut polled, &mut stopped, &mut clock)?;
            if flushed.elapsed().as_secs() >= 30 {
                clock.steps.insert(s.name.clone(), before + t.elapsed().as_secs_f64() - stopped);
                clock.save(&run.dir, start)?;
                flushed = Instant::now();
            }
        };
        poll(&mut polled, &mut stopped, &mut clock)?;
        clock.steps.insert(s.name.clone(), before + t.elapsed().as_secs_f64() - stopped);
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
        refuse_wrong_kind_of_net(&run.name, s, &log_path, logged)?;
    }
    Ok((clock, start))
}

/// Stops a run whose step said it was given a net of the other kind (`awt prune`/`ticket` warn when
/// `--model`'s recorded training is not what the method works on): no recipe asks for that, so the
/// plan has a bug. The warning is read from the step's part of the log (after byte `from`, invalid
/// UTF-8 replaced); its output is moved aside (`<output>.wrong-kind`), never taken as done later.
fn refuse_wrong_kind_of_net(run: &str, step: &Step, log: &Path, from: u64) -> Result<()> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(log)?;
    f.seek(std::io::SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    f.take(1 << 20).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let Some(w) = text.lines().find(|l| l.starts_with("warning: --model") && l.contains("as published")) else {
        return Ok(());
    };
    let aside = step.done.with_file_name(format!(
        "{}.wrong-kind",
        step.done.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    if step.done.exists() {
        std::fs::rename(&step.done, &aside)?;
    }
    bail!(
        "{run}: step `{}` was given a net of the other kind (a bug in the plan; its output moved to {}):\n{w}",
        step.name,
        aside.display()
    )
}

/// The manifest of a run whose steps have all finished: what ran, with what, and what it measured.
fn write_manifest(
    run: &Run,
    preset: &str,
    threads: Option<usize>,
    clock: &Clock,
    start: Instant,
    gemm: Option<String>,
) -> Result<f64> {
    let eval: EvalRecord = read_json(&run.dir.join(layout::EVAL))?;
    let (rustc, candle) = tool_versions();
    let manifest = Manifest {
        preset: preset.into(),
        name: run.name.clone(),
        arch: run.arch.clone(),
        method: run.method,
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
        dataset_verified: eval.verified(),
        threads: threads.map(|t| t.to_string()).unwrap_or_else(|| "default".into()),
        attack: eval.settings.clone(),
        eval: EvalCounts {
            n: eval.n,
            clean_correct: eval.clean_correct,
            robust_correct: eval.robust_correct.context("eval.json: no robust count (no attack ran)")?,
            cumulative: eval
                .cumulative
                .iter()
                .map(|c| Cumulative { attack: c.attack.clone(), robust_correct: c.robust_correct })
                .collect(),
            noise_broken: eval.noise_broken.filter(|&k| k > 0),
        },
        warnings: eval.warnings.clone(),
        timings_seconds: clock.steps.clone(),
        wall_seconds: clock.wall(start),
        cpu: cpu(),
        gemm,
        split: eval.validation_held_out.map(|_| eval.split.clone().unwrap_or_else(|| "test".into())),
        validation_held_out: eval.validation_held_out,
        device: eval.device.clone(),
        stopped_seconds: Some(clock.stopped()),
    };
    // Whole or not at all: the manifest marks the run finished.
    crate::workspace::write_atomic(&run.dir.join(layout::MANIFEST), serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run folder held by another worker of this process is waited for; one held by another
    /// process is refused with its id, or waited for where any holder is to be waited for.
    #[test]
    fn run_folders_wait_for_their_own_workers_and_refuse_other_processes() {
        let dir = std::env::temp_dir().join(format!("awt-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let held = wait_lock(&dir, "a", false).unwrap();
        let t = Instant::now();
        let waiter = std::thread::spawn({
            let dir = dir.clone();
            move || wait_lock(&dir, "b", false).map(|_| ())
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(held);
        waiter.join().unwrap().unwrap();
        assert!(t.elapsed().as_millis() >= 300, "did not wait for the other worker");
        // Another process (flock(1) from util-linux) holds the lock; the file names process 1.
        let file = dir.join(".xtask.lock");
        std::fs::write(&file, "1").unwrap();
        let mut other = Command::new("flock").arg("-x").arg(&file).args(["sleep", "3"]).spawn().unwrap();
        // Until flock holds it (a loaded machine may take a while to start it): a lock taken
        // before then is given back at once, the file again naming process 1.
        let asked = Instant::now();
        let err = loop {
            match wait_lock(&dir, "c", false) {
                Err(e) => break e.to_string(),
                Ok(early) => {
                    drop(early);
                    std::fs::write(&file, "1").unwrap();
                }
            }
            assert!(asked.elapsed().as_secs() < 20, "flock never took the lock");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(err.contains("is in use by process 1 (another cargo xtask reproduce?)"), "{err}");
        let t = Instant::now();
        wait_lock(&dir, "d", true).unwrap();
        assert!(t.elapsed().as_millis() >= 500, "did not wait for the other process");
        other.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A run that fails (or is killed) in its second step and is resumed later reports the compute
    /// of both sittings: the first step's time from the first sitting, the second step's from both.
    /// A dense run in `dir` for the clock tests (the steps are stand-ins).
    fn dense_run(dir: &Path) -> Run {
        Run {
            name: "r".into(),
            dir: dir.to_path_buf(),
            arch: "lenet-300-100".into(),
            method: awt_runs::Method::Dense,
            density: awt_runs::Density::ONE,
            seed: 0,
            canonical: "c".into(),
            flags: Vec::new(),
            dense_dir: None,
            rewind_from: None,
            pretrained_from: None,
        }
    }

    /// A step paused with `kill -STOP` (the grid is paused so while benchmarks run) does not count
    /// the pause as compute: here the step stops the runner itself for 13 s, and neither the step's
    /// time nor the run's wall time counts them. (The whole test process stops meanwhile.)
    #[test]
    fn time_spent_stopped_is_not_counted() {
        assert_eq!(stopped_part(0.25), 0.0);
        assert!((stopped_part(12.0) - 11.8).abs() < 1e-9);
        let dir = std::env::temp_dir().join(format!("awt-stopped-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run = dense_run(&dir);
        let pid = std::process::id();
        let script = format!("(sleep 13; kill -CONT {pid}) & kill -STOP {pid}; touch {}/s.done", dir.display());
        let steps =
            [Step { name: "s".into(), args: vec!["-c".into(), script], done: dir.join("s.done"), resume_from: None }];
        std::fs::write(dir.join(layout::EVAL), crate::records::test_eval(10, 9, 5)).unwrap();
        let t = Instant::now();
        let lock = wait_lock(&dir, "test", false).unwrap();
        super::execute(lock, Path::new("/bin/sh"), &run, &steps, Child::CPU, "test", &mut no_wait).unwrap();
        assert!(t.elapsed().as_secs_f64() >= 12.0, "the step did not stop the runner");
        let m: Manifest = read_json(&dir.join(layout::MANIFEST)).unwrap();
        assert!(m.timings_seconds["s"] < 5.0, "the pause counted: step {} s", m.timings_seconds["s"]);
        assert!(m.wall_seconds < 5.0, "the pause counted: wall {} s", m.wall_seconds);
        let stood = m.stopped_seconds.expect("a record says how long it stood stopped");
        assert!((12.0..14.0).contains(&stood), "stopped {stood} s");
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
        assert!(log.contains("not counted in this step's time"), "{log}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A step that warns it was given a net of the other kind stops the run, its output moved
    /// aside so a later sitting runs the step again instead of taking it as done; other warnings
    /// (an evaluation's) do not stop it.
    #[test]
    fn a_step_given_a_net_of_the_other_kind_stops_the_run() {
        let dir = std::env::temp_dir().join(format!("awt-wrong-kind-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run = dense_run(&dir);
        let step = |name: &str, say: &str| Step {
            name: name.into(),
            args: vec!["-c".into(), format!("echo '{say}' >&2; touch {}/{name}.done", dir.display())],
            done: dir.join(format!("{name}.done")),
            resume_from: None,
        };
        let fine = step("eval", "WARNING: 3 of 9 points have an all-zero input gradient");
        let wrong = step(
            "hydra",
            "warning: --model i.safetensors records no training (no `trained` or `epoch` in its metadata), but \
             hydra prunes a trained net: this is not hydra as published",
        );
        let go = |steps: &[Step]| run_steps(Path::new("/bin/sh"), &run, steps, Child::CPU, &mut no_wait);
        go(std::slice::from_ref(&fine)).unwrap();
        let e = go(&[fine.clone(), wrong.clone()]).err().expect("the run went on").to_string();
        assert!(
            e.contains("step `hydra` was given a net of the other kind") && e.contains("hydra.done.wrong-kind"),
            "{e}"
        );
        assert!(!wrong.done.exists() && dir.join("hydra.done.wrong-kind").exists());
        assert!(fine.done.exists(), "an earlier step's output was touched");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `--force` empties a run folder but waits for whoever of this process holds it, and keeps the
    /// lock file (so a holder's lock stays the one later takers see).
    #[test]
    fn force_clears_a_folder_once_its_holder_is_done() {
        let dir = std::env::temp_dir().join(format!("awt-clear-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("train")).unwrap();
        std::fs::write(dir.join("train").join("model.safetensors"), "x").unwrap();
        std::fs::write(dir.join(layout::MANIFEST), "{}").unwrap();
        let held = wait_lock(&dir, "test", false).unwrap();
        let d = dir.clone();
        let clearing = std::thread::spawn(move || clear(&d, "force"));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(dir.join(layout::MANIFEST).exists(), "cleared a folder in use");
        drop(held);
        clearing.join().unwrap().unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from(layout::RUNNER_LOCK)]);
        clear(&dir.join("absent"), "force").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn step_timings_carry_across_sittings() {
        let dir = std::env::temp_dir().join(format!("awt-clock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = dense_run(&dir);
        let step = |name: &str, script: &str, done: &str| Step {
            name: name.into(),
            args: vec!["-c".into(), script.replace("DIR", &dir.to_string_lossy())],
            done: dir.join(done),
            resume_from: None,
        };
        let sh = Path::new("/bin/sh");
        let first = [step("a", "sleep 0.4; touch DIR/a.done", "a.done"), step("b", "sleep 0.3; exit 1", "b.done")];
        let execute = |steps: &[Step]| {
            std::fs::create_dir_all(&dir).unwrap();
            super::execute(wait_lock(&dir, "test", false).unwrap(), sh, &run, steps, Child::CPU, "test", &mut no_wait)
        };
        assert!(execute(&first).is_err());
        std::fs::write(dir.join(layout::EVAL), crate::records::test_eval(10, 9, 5)).unwrap();
        let second = [step("a", "exit 1", "a.done"), step("b", "sleep 0.2; touch DIR/b.done", "b.done")];
        execute(&second).unwrap();
        let m: Manifest = read_json(&dir.join(layout::MANIFEST)).unwrap();
        let (a, b) = (m.timings_seconds["a"], m.timings_seconds["b"]);
        assert!((0.4..1.5).contains(&a), "step a: {a} s");
        assert!((0.5..2.0).contains(&b), "step b counts both sittings: {b} s");
        assert!(m.wall_seconds >= a + b, "wall {} < {a} + {b}", m.wall_seconds);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
