//! Experiment grids as data: `experiments/<preset>.toml` expands into runs, each a folder named by
//! its config hash holding every artefact, a log and a manifest. Finished runs are skipped,
//! interrupted ones resume.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::root;

/// One run of a grid.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub name: String,
    pub dir: PathBuf,
    pub arch: String,
    pub method: String,
    pub density: f64,
    pub seed: u64,
    pub canonical: String,
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}

pub(crate) fn load_spec(preset: &str) -> Result<toml::Table> {
    let p = root().join("experiments").join(format!("{preset}.toml"));
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("no preset `{preset}`: cannot read {}", p.display()))?;
    text.parse::<toml::Table>().with_context(|| format!("{}: not valid TOML", p.display()))
}

fn get<'a>(t: &'a toml::Table, path: &str) -> Result<&'a toml::Value> {
    let mut cur: &toml::Value =
        t.get(path.split('.').next().unwrap_or_default()).with_context(|| format!("spec has no `{path}`"))?;
    for part in path.split('.').skip(1) {
        cur = cur.get(part).with_context(|| format!("spec has no `{path}`"))?;
    }
    Ok(cur)
}

fn s(t: &toml::Table, path: &str) -> Result<String> {
    Ok(match get(t, path)? {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn list(t: &toml::Table, path: &str) -> Result<Vec<toml::Value>> {
    Ok(get(t, path)?.as_array().with_context(|| format!("`{path}` must be a list"))?.clone())
}

/// Chooses the dataset: the spec's when `awt data list` finds it, else its fallback.
fn choose_data(spec: &toml::Table, awt: &Path) -> Result<String> {
    let want = s(spec, "data")?;
    let out = Command::new(awt).args(["data", "list"]).output().context("cannot run awt data list")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text
        .lines()
        .any(|l| l.split_whitespace().next() == Some(want.as_str()) && l.split_whitespace().nth(1) == Some("found"));
    Ok(if found { want } else { s(spec, "fallback_data")? })
}

pub(crate) fn expand(preset: &str, spec: &toml::Table, data: &str, base: &Path) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    let mut settings = format!(
        "data={data} train={} search={} prune={} eval={}",
        get(spec, "train")?,
        get(spec, "search")?,
        get(spec, "prune")?,
        get(spec, "eval")?
    );
    // Optional tables join the hash only when present, so older presets keep their run names.
    if let Ok(init) = get(spec, "init") {
        settings += &format!(" init={init}");
    }
    for arch in list(spec, "archs")? {
        let arch = arch.as_str().context("archs are strings")?.to_string();
        for seed in list(spec, "seeds")? {
            let seed = seed.as_integer().context("seeds are integers")? as u64;
            for method in list(spec, "methods")? {
                let method = method.as_str().context("methods are strings")?.to_string();
                let densities: Vec<f64> = if method == "dense" {
                    vec![1.0]
                } else {
                    list(spec, "densities")?.iter().map(|d| d.as_float().unwrap_or(f64::NAN)).collect()
                };
                for density in densities {
                    if !(density > 0.0 && density <= 1.0) {
                        bail!("experiments/{preset}.toml: densities must be in (0, 1]");
                    }
                    let canonical = format!("arch={arch} method={method} density={density} seed={seed} {settings}");
                    let name = format!("{arch}-{method}-d{density}-s{seed}");
                    let dir = base.join(format!("{name}-{}", &fnv(&canonical)[..10]));
                    runs.push(Run { name, dir, arch: arch.clone(), method: method.clone(), density, seed, canonical });
                }
            }
        }
    }
    Ok(runs)
}

/// The `awt` command lines of one run, in order (the last is the evaluation), each with the file
/// whose existence marks it done.
fn commands(run: &Run, spec: &toml::Table, data: &str) -> Result<Vec<(String, Vec<String>, PathBuf)>> {
    let cmds = command_lines(run, spec, data)?;
    Ok(cmds
        .into_iter()
        .map(|(step, args)| {
            let out = args
                .iter()
                .position(|a| a == "--out" || a == "--json")
                .map(|i| PathBuf::from(&args[i + 1]))
                .unwrap_or_default();
            let done = if step.ends_with("train") { out.join("model.safetensors") } else { out };
            (step, args, done)
        })
        .collect())
}

/// Train flags shared by every training step of a run.
fn train_flags(run: &Run, spec: &toml::Table, data: &str, epochs: &str) -> Result<Vec<String>> {
    let v = |p: &str| s(spec, p);
    let mut f: Vec<String> = vec![
        "--data",
        data,
        "--adv",
        &v("train.adv")?,
        "--eps",
        &v("train.eps")?,
        "--steps",
        &v("train.steps")?,
        "--step-size",
        &v("train.step_size")?,
        "--epochs",
        epochs,
        "--batch",
        &v("train.batch")?,
        "--opt",
        &v("train.opt")?,
        "--lr",
        &v("train.lr")?,
        "--eval-n",
        &v("train.eval_n")?,
        "--eval-steps",
        &v("train.eval_steps")?,
        "--seed",
        &run.seed.to_string(),
        "--quiet",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Ok(n) = v("train.train_limit") {
        f.extend(["--train-limit".to_string(), n]);
    }
    if let Ok(wd) = v("train.wd") {
        f.extend(["--wd".to_string(), wd]);
    }
    Ok(f)
}

fn command_lines(run: &Run, spec: &toml::Table, data: &str) -> Result<Vec<(String, Vec<String>)>> {
    let d = |p: &str| run.dir.join(p).display().to_string();
    let v = |p: &str| s(spec, p);
    let mut init = vec!["init".to_string(), "--arch".into(), run.arch.clone(), "--seed".into(), run.seed.to_string()];
    if let Ok(scheme) = v("init.scheme") {
        init.extend(["--init".to_string(), scheme]);
    }
    if get(spec, "init.standardize").ok().and_then(toml::Value::as_bool) == Some(true) {
        init.extend(["--standardize".to_string(), data.to_string()]);
    }
    init.extend(["--out".to_string(), d("init.safetensors")]);
    let mut cmds = vec![("init".to_string(), init)];
    let ticket = match run.method.as_str() {
        "dense" => d("init.safetensors"),
        "random" | "magnitude" | "snip" | "grasp" | "synflow" => {
            cmds.push((
                "prune".into(),
                vec![
                    "prune",
                    "--method",
                    &run.method,
                    "--density",
                    &run.density.to_string(),
                    "--model",
                    &d("init.safetensors"),
                    "--data",
                    data,
                    "--batch",
                    &v("prune.batch")?,
                    "--rounds",
                    &v("prune.rounds")?,
                    "--seed",
                    &run.seed.to_string(),
                    "--out",
                    &d("ticket.safetensors"),
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ));
            d("ticket.safetensors")
        }
        "ntt" | "awt" => {
            cmds.push((
                "search".into(),
                vec![
                    "ticket",
                    "--method",
                    &run.method,
                    "--density",
                    &run.density.to_string(),
                    "--model",
                    &d("init.safetensors"),
                    "--data",
                    data,
                    "--steps",
                    &v("search.steps")?,
                    "--batch",
                    &v("search.batch")?,
                    "--lr",
                    &v("search.lr")?,
                    "--lambda-ker",
                    &v("search.lambda_ker")?,
                    "--lambda-l2",
                    &v("search.lambda_l2")?,
                    "--mask-every",
                    &v("search.mask_every")?,
                    "--eps",
                    &v("train.eps")?,
                    "--attack-steps",
                    &v("search.attack_steps")?,
                    "--seed",
                    &run.seed.to_string(),
                    "--quiet",
                    "--out",
                    &d("ticket.safetensors"),
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ));
            d("ticket.safetensors")
        }
        "imp-at" => {
            // Iterative magnitude pruning with adversarial training and rewinding to the
            // initialisation (lottery tickets): R rounds of (train, prune to d^(r/R), rewind).
            let rounds: usize = v("imp.rounds")?.parse().context("imp.rounds")?;
            let mut current = d("init.safetensors");
            for r in 1..=rounds {
                let mut t =
                    vec!["train".to_string(), if r == 1 { "--init" } else { "--ticket" }.to_string(), current.clone()];
                t.extend(train_flags(run, spec, data, &v("imp.epochs")?)?);
                t.extend(["--out".to_string(), d(&format!("imp{r}"))]);
                cmds.push((format!("imp{r}-train"), t));
                let density = run.density.powf(r as f64 / rounds as f64);
                let next = d(&format!("imp{r}-ticket.safetensors"));
                cmds.push((
                    format!("imp{r}-prune"),
                    vec![
                        "prune".to_string(),
                        "--method".into(),
                        "magnitude".into(),
                        "--density".into(),
                        density.to_string(),
                        "--model".into(),
                        d(&format!("imp{r}/model.safetensors")),
                        "--rewind".into(),
                        d("init.safetensors"),
                        "--out".into(),
                        next.clone(),
                    ],
                ));
                current = next;
            }
            current
        }
        "hydra" => {
            // HYDRA: adversarially pretrain the dense net, optimise importance scores under the
            // robust loss, keep the top-k; the final training below fine-tunes the pruned weights.
            let mut t = vec!["train".to_string(), "--init".into(), d("init.safetensors")];
            t.extend(train_flags(run, spec, data, &v("hydra.pretrain_epochs")?)?);
            t.extend(["--out".to_string(), d("pretrain")]);
            cmds.push(("pretrain-train".into(), t));
            let mut p: Vec<String> = vec![
                "prune",
                "--method",
                "hydra",
                "--density",
                &run.density.to_string(),
                "--model",
                &d("pretrain/model.safetensors"),
                "--data",
                data,
                "--hydra-epochs",
                &v("hydra.epochs")?,
                "--hydra-lr",
                &v("hydra.lr")?,
                "--eps",
                &v("train.eps")?,
                "--attack-steps",
                &v("train.steps")?,
                "--seed",
                &run.seed.to_string(),
                "--out",
                &d("ticket.safetensors"),
            ]
            .into_iter()
            .map(String::from)
            .collect();
            if let Ok(n) = v("train.train_limit") {
                p.extend(["--train-limit".to_string(), n]);
            }
            cmds.push(("hydra".into(), p));
            d("ticket.safetensors")
        }
        other => bail!("unknown method `{other}` in the spec"),
    };
    let mut train =
        vec!["train".to_string(), if run.method == "dense" { "--init" } else { "--ticket" }.to_string(), ticket];
    train.extend(train_flags(run, spec, data, &v("train.epochs")?)?);
    if get(spec, "train.track_kernel").ok().and_then(toml::Value::as_bool) != Some(false) {
        train.extend(["--track-kernel".to_string(), d("init.safetensors")]);
    }
    train.extend(["--out".to_string(), d("train")]);
    cmds.push(("train".into(), train));
    cmds.push((
        "eval".into(),
        vec![
            "eval",
            "--model",
            &d("train/model.safetensors"),
            "--data",
            data,
            "--limit",
            &v("eval.n")?,
            "--attack",
            &v("eval.attack").unwrap_or_else(|_| "worst".into()),
            "--eps",
            &v("train.eps")?,
            "--steps",
            &v("eval.steps")?,
            "--apgd-steps",
            &v("eval.apgd_steps")?,
            "--seed",
            &run.seed.to_string(),
            "--json",
            &d("eval.json"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ));
    Ok(cmds)
}

/// The `awt` binary: `AWT_BIN` when set (a frozen build, so long grids are not affected by rebuilds
/// while they run), else a fresh release build.
fn awt_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AWT_BIN") {
        return Ok(PathBuf::from(p));
    }
    crate::cargo(&["build", "--release", "-p", "awt-cli"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    Ok(target.join("release").join("awt"))
}

fn tool_versions() -> (String, String) {
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap_or_default();
    let mut candle = String::from("unknown");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"candle-core\"" {
            candle = lines.next().unwrap_or_default().trim_start_matches("version = ").trim_matches('"').to_string();
            break;
        }
    }
    (rustc, candle)
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
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
    std::io::Write::write_all(&mut f, std::process::id().to_string().as_bytes())?;
    Ok(f)
}

/// Runs one run's commands, skipping finished steps and resuming training.
fn execute(
    awt: &Path,
    run: &Run,
    cmds: &[(String, Vec<String>, PathBuf)],
    threads: Option<usize>,
    preset: &str,
) -> Result<f64> {
    std::fs::create_dir_all(&run.dir).with_context(|| format!("cannot create {}", run.dir.display()))?;
    let _lock = lock(&run.dir)?;
    std::fs::write(run.dir.join("config.txt"), &run.canonical)?;
    let log_path = run.dir.join("run.log");
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let start = Instant::now();
    let mut timings = BTreeMap::new();
    for (step, args, done) in cmds {
        if done.exists() {
            continue;
        }
        let mut args = args.clone();
        if step.ends_with("train") && done.parent().is_some_and(|p| p.join("state.safetensors").exists()) {
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
        let status = c.status().with_context(|| format!("cannot run {}", awt.display()))?;
        timings.insert(step.clone(), t.elapsed().as_secs_f64());
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            bail!(
                "{}: `awt {step}` failed; see {}\n{}",
                run.name,
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.dir.join("eval.json"))?)?;
    let (rustc, candle) = tool_versions();
    let manifest = json!({
        "preset": preset, "name": run.name, "arch": run.arch, "method": run.method, "density": run.density, "seed": run.seed,
        "config": run.canonical, "config_hash": fnv(&run.canonical),
        // The commit the `awt` binary was built from (it may differ from the checkout's HEAD with AWT_BIN).
        "git_commit": eval["git_commit"].as_str().map(String::from).unwrap_or_else(git_commit), "rustc": rustc,
        "crates": {"candle-core": candle, "awt": env!("CARGO_PKG_VERSION")},
        "dataset_files": eval["dataset_files"], "data": eval["data"], "dataset_location": eval["dataset_location"],
        "threads": threads.map(|t| t.to_string()).unwrap_or_else(|| "default".into()),
        "attack": eval["settings"], "eval": {"n": eval["n"], "clean_correct": eval["clean_correct"], "robust_correct": eval["robust_correct"], "cumulative": eval["cumulative"]},
        "timings_seconds": timings, "wall_seconds": start.elapsed().as_secs_f64(),
    });
    std::fs::write(run.dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(start.elapsed().as_secs_f64())
}

/// The committed records of a finished run: `results/<preset>/<run name>/`.
pub(crate) fn record_dir(preset: &str, run: &Run) -> PathBuf {
    root().join("results").join(preset).join(&run.name)
}

/// True when `results/` already holds this run's records under the same configuration.
fn recorded(preset: &str, run: &Run) -> bool {
    std::fs::read_to_string(record_dir(preset, run).join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|m| m["config_hash"].as_str() == Some(fnv(&run.canonical).as_str()))
}

/// Copies a finished run's small records (no checkpoints) into `results/<preset>/<run name>/`:
/// manifest, evaluation, training summary and metrics, and the search log thinned to every 50th
/// step (and the last), so a study's records stay a few megabytes.
fn record(preset: &str, run: &Run) -> Result<()> {
    let dst = record_dir(preset, run);
    std::fs::create_dir_all(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
    for (src, name) in [
        ("eval.json", "eval.json"),
        ("train/summary.json", "train-summary.json"),
        ("train/metrics.jsonl", "train-metrics.jsonl"),
    ] {
        let p = run.dir.join(src);
        if p.exists() {
            std::fs::copy(&p, dst.join(name)).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    let search = run.dir.join("ticket.search.jsonl");
    if let Ok(text) = std::fs::read_to_string(&search) {
        let lines: Vec<&str> = text.lines().collect();
        let kept: Vec<&str> =
            lines.iter().enumerate().filter(|(i, _)| i % 50 == 0 || i + 1 == lines.len()).map(|(_, l)| *l).collect();
        std::fs::write(dst.join("search.jsonl"), kept.join("\n") + "\n")?;
    }
    // The manifest last: its presence marks the record complete.
    std::fs::copy(run.dir.join("manifest.json"), dst.join("manifest.json"))?;
    Ok(())
}

struct Opts {
    preset: String,
    only: Option<String>,
    jobs: usize,
    force: bool,
    list: bool,
    shard: Option<(usize, usize)>,
    out: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts { preset: "quick".into(), only: None, jobs: 1, force: false, list: false, shard: None, out: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--preset" => o.preset = val("--preset")?,
            "--only" => o.only = Some(val("--only")?),
            "--jobs" => o.jobs = val("--jobs")?.parse().context("--jobs: not a number")?,
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

/// Runs a grid; returns the run folders.
fn run_grid(o: &Opts) -> Result<Vec<Run>> {
    let spec = load_spec(&o.preset)?;
    let awt = awt_binary()?;
    let data = choose_data(&spec, &awt)?;
    let base = o.out.clone().unwrap_or_else(|| root().join("runs").join(&o.preset));
    let mut runs = expand(&o.preset, &spec, &data, &base)?;
    if let Some(p) = &o.only {
        runs.retain(|r| r.name.contains(p.as_str()));
    }
    if let Some((i, n)) = o.shard {
        runs = runs.into_iter().enumerate().filter(|(k, _)| k % n == i).map(|(_, r)| r).collect();
    }
    if o.list {
        for r in &runs {
            println!("cargo xtask reproduce --preset {} --only {} --out {}", o.preset, r.name, base.display());
        }
        return Ok(Vec::new());
    }
    if data != s(&spec, "data")? {
        eprintln!("note: {} not found; using {data} instead (the report says so)", s(&spec, "data")?);
    }
    let total = runs.len();
    eprintln!("reproduce {}: {total} runs on {data} into {}", o.preset, base.display());
    let queue = Arc::new(Mutex::new(runs.clone().into_iter().enumerate().collect::<Vec<_>>()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads = if o.jobs > 1 { Some(1) } else { None };
    let started = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..o.jobs.max(1) {
            let (queue, errors, awt, spec, data) =
                (queue.clone(), errors.clone(), awt.clone(), spec.clone(), data.clone());
            sc.spawn(move || {
                loop {
                    let next = {
                        let mut q = queue.lock().expect("queue");
                        if q.is_empty() { None } else { Some(q.remove(0)) }
                    };
                    let Some((k, run)) = next else { break };
                    if o.force && run.dir.exists() {
                        let _ = std::fs::remove_dir_all(&run.dir);
                    }
                    let keep = spec.get("record").and_then(toml::Value::as_bool) == Some(true);
                    if keep && !o.force && recorded(&o.preset, &run) {
                        eprintln!("[{:>3}/{total}] {} — recorded in results/, skipped", k + 1, run.name);
                        continue;
                    }
                    if run.dir.join("manifest.json").exists() {
                        eprintln!("[{:>3}/{total}] {} — done earlier, skipped", k + 1, run.name);
                        if keep && let Err(e) = record(&o.preset, &run) {
                            errors.lock().expect("errors").push(format!("{e:#}"));
                        }
                        continue;
                    }
                    eprintln!(
                        "[{:>3}/{total}] {} — running ({:.0} s elapsed)",
                        k + 1,
                        run.name,
                        started.elapsed().as_secs_f64()
                    );
                    let res = commands(&run, &spec, &data)
                        .and_then(|c| execute(&awt, &run, &c, threads, &o.preset))
                        .and_then(|t| if keep { record(&o.preset, &run).map(|_| t) } else { Ok(t) });
                    match res {
                        Ok(t) => eprintln!("[{:>3}/{total}] {} — finished in {t:.0} s", k + 1, run.name),
                        Err(e) => errors.lock().expect("errors").push(format!("{e:#}")),
                    }
                }
            });
        }
    });
    let errors = errors.lock().expect("errors");
    if !errors.is_empty() {
        bail!("{} run(s) failed:\n{}", errors.len(), errors.join("\n"));
    }
    eprintln!("all {total} runs finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(runs)
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let runs = run_grid(&o)?;
    if o.list || runs.is_empty() || o.shard.is_some() {
        return Ok(());
    }
    let base = o.out.clone().unwrap_or_else(|| root().join("runs").join(&o.preset));
    if o.preset == "smoke" {
        return Ok(());
    }
    if load_spec(&o.preset)?.get("record").and_then(toml::Value::as_bool) == Some(true) {
        // Recorded presets are reported from results/ (the study report), not into the quick report.
        eprintln!("records in {}", root().join("results").join(&o.preset).display());
        return Ok(());
    }
    crate::report::write(&[base], &root().join("docs").join("reproduction.md"))
}

/// `cargo xtask regress [--bless]`: the smoke preset against its committed baseline.
pub(crate) fn regress(args: &[String]) -> Result<()> {
    let bless = args.iter().any(|a| a == "--bless");
    if let Some(a) = args.iter().find(|a| *a != "--bless") {
        bail!("regress: unknown flag `{a}`");
    }
    let out = root().join("target").join("regress");
    let o = Opts { preset: "smoke".into(), only: None, jobs: 1, force: true, list: false, shard: None, out: Some(out) };
    let runs = run_grid(&o)?;
    let mut now = BTreeMap::new();
    for r in &runs {
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(r.dir.join("manifest.json"))?)?;
        now.insert(
            r.name.clone(),
            (
                m["eval"]["n"].as_u64().unwrap_or(0),
                m["eval"]["clean_correct"].as_u64().unwrap_or(0),
                m["eval"]["robust_correct"].as_u64().unwrap_or(0),
            ),
        );
    }
    let path = root().join("experiments").join("smoke-baseline.json");
    let to_json = |m: &BTreeMap<String, (u64, u64, u64)>| {
        serde_json::Value::Object(
            m.iter()
                .map(|(k, (n, c, r))| (k.clone(), json!({"n": n, "clean_correct": c, "robust_correct": r})))
                .collect(),
        )
    };
    let old: BTreeMap<String, (u64, u64, u64)> = match std::fs::read_to_string(&path) {
        Ok(t) => {
            let v: serde_json::Value =
                serde_json::from_str(&t).with_context(|| format!("{}: not valid JSON", path.display()))?;
            v.as_object()
                .context("baseline must be an object")?
                .iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        (
                            x["n"].as_u64().unwrap_or(0),
                            x["clean_correct"].as_u64().unwrap_or(0),
                            x["robust_correct"].as_u64().unwrap_or(0),
                        ),
                    )
                })
                .collect()
        }
        Err(_) if bless => BTreeMap::new(),
        Err(e) => bail!("{}: {e} (create it with `cargo xtask regress --bless`)", path.display()),
    };
    println!("{:<36} {:>5} {:>14} {:>14} {:>6}", "run", "n", "clean old→new", "robust old→new", "ok");
    let mut failed = Vec::new();
    for (name, (n, c, r)) in &now {
        let (oc, or) = old.get(name).map(|x| (x.1 as i64, x.2 as i64)).unwrap_or((-1, -1));
        // Two-sided band: an unexplained rise in robust accuracy usually means a weakened attack.
        let band = (*n as f64 * 0.02).ceil().max(2.0) as i64;
        let ok = oc >= 0 && (*c as i64 - oc).abs() <= band && (*r as i64 - or).abs() <= band;
        println!("{:<36} {:>5} {:>6}→{:<7} {:>6}→{:<7} {:>6}", name, n, oc, c, or, r, if ok { "ok" } else { "FAIL" });
        if !ok {
            failed.push(name.clone());
        }
    }
    for name in old.keys().filter(|k| !now.contains_key(*k)) {
        println!("{name:<36} missing from this run");
        failed.push(name.clone());
    }
    if bless {
        std::fs::write(&path, serde_json::to_string_pretty(&to_json(&now))? + "\n")?;
        println!("blessed: {} now holds these counts", path.display());
        return Ok(());
    }
    if !failed.is_empty() {
        bail!("robust-accuracy regression (band ±max(2, 2% of n) correct answers): {}", failed.join(", "));
    }
    println!("regress: all {} runs within the band", now.len());
    Ok(())
}
