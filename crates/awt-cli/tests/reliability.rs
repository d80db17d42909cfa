//! What a hostile or clumsy user of `awt` found, each kept fixed where the user meets it: no run,
//! checkpoint or dataset is lost or silently wrong. One test per defect class; the fault-injection
//! test kills training runs at random moments and checks that every survivor resumes bit-identically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::legacy_hash;

fn awt_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_awt"));
    c.args(args).env_remove("AWT_DATA_DIR").env("AWT_LOG", "off").env("AWT_OFFLINE", "1");
    c
}

/// Runs `awt`; returns (success, stdout, stderr).
fn awt(args: &[&str]) -> (bool, String, String) {
    let o = awt_cmd(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = awt(args);
    assert!(success, "{args:?} failed: {err}");
    out
}

/// Runs `awt` expecting failure; returns stderr, which must be one `error:` line naming `needle`.
fn fails(args: &[&str], needle: &str) -> String {
    let (success, _, err) = awt(args);
    assert!(!success, "{args:?} succeeded, expected an error naming {needle}");
    assert!(err.contains(needle), "{args:?}: the error does not name {needle}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small MLP initialisation in `dir`.
fn init(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    ok(&["init", "--arch", "mlp-784-32-10", "--seed", "1", "--out", s(&p)]);
    p
}

/// Flags of a short training run on the embedded data (about a second).
fn train_args<'a>(init: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--init",
        init,
        "--adv",
        "pgd",
        "--steps",
        "2",
        "--epochs",
        "6",
        "--batch",
        "32",
        "--opt",
        "sgd",
        "--lr",
        "0.3",
        "--train-limit",
        "512",
        "--eval-n",
        "100",
        "--eval-steps",
        "2",
        "--quiet",
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

fn metrics_without_timing(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(",\"images_per_sec\"").next().unwrap().to_string())
        .collect()
}

/// Runs the training of `args` in `out` to completion after a kill: resumes while a checkpoint
/// exists, starts afresh otherwise.
fn finish(args: &[&str], out: &Path) {
    let mut a = args.to_vec();
    if out.join("state.safetensors").exists() {
        a.push("--resume");
    }
    ok(&a);
}

#[test]
fn keep_best_survives_kill_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path(), "init.safetensors");
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    ok(&train_args(s(&init), s(&full), &["--keep-best"]));
    let robust: Vec<f64> = metrics_without_timing(&full)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(&format!("{l}}}")).unwrap()["robust_acc"].as_f64().unwrap())
        .collect();
    let best = (0..robust.len()).fold(0, |b, i| if robust[i] > robust[b] { i } else { b });
    // The defect needs a resume point after the best epoch and a worse epoch after it.
    assert!(best + 2 < robust.len(), "fixture lost its shape: {robust:?}");
    // Kill once the checkpoint after the best epoch is written (the metrics line of epoch e is
    // appended just before e's checkpoint, so best + 2 lines mean epoch best's checkpoint exists).
    let mut child = awt_cmd(&train_args(s(&init), s(&part), &["--keep-best"])).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while metrics_without_timing(&part).len() < best + 2 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    finish(&train_args(s(&init), s(&part), &["--keep-best"]), &part);
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert!(
        read(&full, "best.safetensors") == read(&part, "best.safetensors"),
        "best.safetensors differs after resume"
    );
    assert!(read(&full, "model.safetensors") == read(&part, "model.safetensors"));
}

#[test]
fn killed_runs_resume_bit_identically_wherever_they_die() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path(), "init.safetensors");
    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    ok(&train_args(s(&init), s(&reference), &["--keep-best"]));
    let span = t0.elapsed().as_millis() as u64;
    // Kill times spread over the whole run (start-up, mid-epoch, during checkpoint writes), from a
    // fixed seed so a failure reproduces.
    let mut rng = awt_base::Rng::new(20261201);
    for i in 0..6 {
        let dir = tmp.path().join(format!("killed{i}"));
        let args = train_args(s(&init), s(&dir), &["--keep-best"]);
        let mut child = awt_cmd(&args).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis((rng.uniform() * span as f64) as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        finish(&args, &dir);
        for f in ["model.safetensors", "best.safetensors", "state.safetensors"] {
            assert!(
                std::fs::read(reference.join(f)).unwrap() == std::fs::read(dir.join(f)).unwrap(),
                "kill {i}: {f} differs from the uninterrupted run"
            );
        }
        assert_eq!(metrics_without_timing(&reference), metrics_without_timing(&dir), "kill {i}: metrics differ");
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "kill {i}: temporary files left: {leftovers:?}");
    }
}

#[test]
fn a_refused_run_leaves_the_existing_run_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path(), "init.safetensors");
    let out = tmp.path().join("run");
    ok(&train_args(s(&init), s(&out), &["--epochs", "1"]));
    let before: Vec<(String, Vec<u8>)> = ["config.toml", "metrics.jsonl", "state.safetensors", "model.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(out.join(f)).unwrap()))
        .collect();
    fails(&train_args(s(&init), s(&out), &["--epochs", "1", "--lr", "0.05"]), "--resume");
    // The initialisation changed since (one weight's byte): resuming from its path is refused, as
    // the run's weights came from the file that was there.
    let original = std::fs::read(&init).unwrap();
    let mut nudged = original.clone();
    *nudged.last_mut().unwrap() ^= 1;
    std::fs::write(&init, &nudged).unwrap();
    fails(&train_args(s(&init), s(&out), &["--epochs", "1", "--resume"]), "is not the file this run started from");
    std::fs::write(&init, &original).unwrap();
    for (f, bytes) in &before {
        assert!(&std::fs::read(out.join(f)).unwrap() == bytes, "{f} changed by a refused run");
    }
    // The same file again: the finished run resumes (to nothing left to do), its files as they were.
    ok(&train_args(s(&init), s(&out), &["--epochs", "1", "--resume"]));
    for (f, bytes) in before {
        assert!(std::fs::read(out.join(&f)).unwrap() == bytes, "{f} changed by resuming a finished run");
    }
    // --resume never creates a folder.
    let missing = tmp.path().join("missing");
    fails(&train_args(s(&init), s(&missing), &["--resume"]), "no such run folder");
    assert!(!missing.exists());
}

#[test]
fn a_second_process_on_the_same_run_folder_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path(), "init.safetensors");
    let out = tmp.path().join("run");
    let args = train_args(s(&init), s(&out), &["--epochs", "30"]);
    let mut first = awt_cmd(&args).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !out.join("config.toml").exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = fails(&args, "in use by process");
    assert!(err.contains(&first.id().to_string()) && err.contains(s(&out)), "{err}");
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run was disturbed");
    assert_eq!(metrics_without_timing(&out).len(), 30);
}

#[test]
fn no_command_overwrites_its_own_input() {
    let tmp = tempfile::tempdir().unwrap();
    let m = init(tmp.path(), "m.safetensors");
    let original = std::fs::read(&m).unwrap();
    let sub = tmp.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let other_path = sub.join("..").join("m.safetensors");
    let hard = tmp.path().join("hard.safetensors");
    std::fs::hard_link(&m, &hard).unwrap();
    let (m, other, hard) = (s(&m), s(&other_path), s(&hard));
    fails(&["eval", "--model", m, "--limit", "10", "--json", other], "--json");
    fails(&["ntk", "--model", m, "--n", "4", "--out", hard], "--out");
    fails(&["prune", "--method", "random", "--density", "0.5", "--model", m, "--out", other], "--out");
    fails(
        &["prune", "--method", "magnitude", "--density", "0.5", "--model", m, "--rewind", hard, "--out", hard],
        "--out",
    );
    fails(&["ticket", "--method", "ntt", "--density", "0.5", "--model", m, "--steps", "2", "--out", hard], "--out");
    // A training run whose folder would receive its own starting checkpoint.
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let inside = run.join("model.safetensors");
    std::fs::copy(m, &inside).unwrap();
    fails(&train_args(s(&inside), s(&run), &[]), "--init");
    assert!(std::fs::read(m).unwrap() == original, "an input was modified");
    assert!(std::fs::read(&inside).unwrap() == original);
}

/// A checkpoint of `mlp-784-32-10` whose weights are all `value`, stored as `dtype`.
fn constant_checkpoint(path: &Path, value: f64, dtype: candle_core::DType) {
    let dev = candle_core::Device::Cpu;
    let mut tensors = Vec::new();
    for (name, shape) in
        [("fc1.weight", vec![32, 784]), ("fc1.bias", vec![32]), ("fc2.weight", vec![10, 32]), ("fc2.bias", vec![10])]
    {
        let t = candle_core::Tensor::full(value, shape.as_slice(), &dev).unwrap().to_dtype(dtype).unwrap();
        tensors.push((name.to_string(), t));
    }
    let meta = std::collections::BTreeMap::from([("arch".to_string(), "mlp-784-32-10".to_string())]);
    std::fs::write(path, awt_base::safetensors_bytes(&tensors, &meta).unwrap()).unwrap();
}

#[test]
fn non_finite_logits_and_kernels_are_errors_not_results() {
    let tmp = tempfile::tempdir().unwrap();
    // Finite in f32, but the logits overflow to infinity and NaN.
    let huge = tmp.path().join("huge.safetensors");
    constant_checkpoint(&huge, 1e30, candle_core::DType::F32);
    let json = tmp.path().join("eval.json");
    fails(&["eval", "--model", s(&huge), "--limit", "20", "--json", s(&json)], "not finite");
    assert!(!json.exists(), "a result was written");
    let k = tmp.path().join("k.safetensors");
    fails(&["ntk", "--model", s(&huge), "--n", "4", "--out", s(&k)], "non-finite");
    assert!(!k.exists(), "a kernel was written");
    // Finite as f64 in the file, infinite once converted to the f32 the commands use.
    let big = tmp.path().join("big.safetensors");
    constant_checkpoint(&big, 1e300, candle_core::DType::F64);
    fails(&["eval", "--model", s(&big), "--limit", "20"], "overflows");
}

#[test]
fn every_numeric_setting_is_checked_by_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let m = init(tmp.path(), "m.safetensors");
    let m = s(&m);
    let out = tmp.path().join("run");
    let o = s(&out);
    for (extra, flag) in [
        (vec!["--schedule", "multistep", "--milestones", "2", "--gamma", "-5"], "--gamma"),
        (vec!["--momentum", "2"], "--momentum"),
        (vec!["--wd", "-1"], "--wd"),
        (vec!["--batch", "0"], "--batch"),
        (vec!["--train-limit", "0"], "--train-limit"),
        (vec!["--eval-n", "0"], "--eval-n"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--steps", "0"], "--steps"),
        (vec!["--lr", "nan"], "--lr"),
        (vec!["--schedule", "multistep", "--milestones", "9"], "--milestones"),
        (vec!["--schedule", "onecycle", "--warmup", "1"], "--warmup"),
    ] {
        fails(&train_args(m, o, &extra), flag);
        assert!(!out.join("state.safetensors").exists(), "{flag}: a refused run wrote a checkpoint");
    }
    fails(&["eval", "--model", m, "--limit", "10", "--steps", "0"], "--steps");
    fails(&["eval", "--model", m, "--limit", "10", "--attack", "apgd-ce", "--apgd-steps", "0"], "--apgd-steps");
    fails(&["eval", "--model", m, "--limit", "10", "--batch", "0"], "--batch");
    fails(&["eval", "--model", m, "--limit", "0"], "--limit");
    fails(&["eval", "--model", m, "--limit", "10", "--restarts", "0"], "--restarts");
    let t = s(&tmp.path().join("t.safetensors")).to_string();
    fails(&["ticket", "--method", "awt", "--density", "0.1", "--model", m, "--steps", "0", "--out", &t], "--steps");
    fails(&["ticket", "--method", "awt", "--density", "0.1", "--model", m, "--epochs", "0", "--out", &t], "--epochs");
    fails(
        &["ticket", "--method", "ntt", "--density", "0.1", "--model", m, "--steps", "5", "--batch", "1", "--out", &t],
        "--batch",
    );
    fails(&["ntk", "--model", m, "--n", "4", "--block", "0", "--out", &t], "--block");
    fails(&["prune", "--method", "snip", "--density", "0.1", "--model", m, "--batch", "0", "--out", &t], "--batch");
    fails(&["prune", "--method", "snip", "--density", "1.5", "--model", m, "--out", &t], "--density");
}

#[test]
fn impossible_networks_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    fails(&["init", "--arch", "mlp-784-100000000-10", "--out", s(&tmp.path().join("x"))], "parameters");
    assert!(t0.elapsed() < Duration::from_secs(10), "the refusal came only after a long allocation");
    // A network with fewer outputs than the data has classes: a clear error, not a gather failure.
    let small = tmp.path().join("small.safetensors");
    ok(&["init", "--arch", "mlp-784-5", "--out", s(&small)]);
    fails(&train_args(s(&small), s(&tmp.path().join("run")), &[]), "10 classes");
    fails(&["eval", "--model", s(&small), "--limit", "10"], "10 classes");
}

#[test]
fn a_closed_or_full_standard_output_is_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let m = init(tmp.path(), "m.safetensors");
    // `awt inspect m | head -1`: the reader leaves after one line.
    let mut child = awt_cmd(&["inspect", s(&m)]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "broken pipe: {:?} {err}", o.status);
    // A full device is an error, said once.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = awt_cmd(&["inspect", s(&m)]).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot write to standard output") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_runs_own_config_file_reproduces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = init(tmp.path(), "m.safetensors");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&train_args(s(&m), s(&a), &["--epochs", "2", "--step-size", "0.03"]));
    let cfg = a.join("config.toml");
    ok(&["train", "--config", s(&cfg), "--quiet", "--out", s(&b)]);
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), std::fs::read_to_string(b.join("config.toml")).unwrap());
    assert!(std::fs::read(a.join("model.safetensors")).unwrap() == std::fs::read(b.join("model.safetensors")).unwrap());
    // Without optional values (no --step-size, no --train-limit) it round-trips too.
    let (c, d) = (tmp.path().join("c"), tmp.path().join("d"));
    ok(&["train", "--init", s(&m), "--epochs", "1", "--eval-n", "50", "--quiet", "--out", s(&c)]);
    ok(&["train", "--config", s(&c.join("config.toml")), "--quiet", "--out", s(&d)]);
}

/// An IDX dataset folder `<dir>/mnist/` holding raw (uncompressed-name) files.
fn mnist_dir(dir: &Path, images: &[u8], train_labels: &[u8], test_images: &[u8], test_labels: &[u8]) -> PathBuf {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    for (f, b) in [
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", train_labels),
        ("t10k-images-idx3-ubyte", test_images),
        ("t10k-labels-idx1-ubyte", test_labels),
    ] {
        std::fs::write(d.join(f), b).unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn datasets_cannot_inflate_and_unverified_files_are_reported() {
    use awt_data::idx::encode;
    let tmp = tempfile::tempdir().unwrap();
    // A 1 MB gzip stream whose header claims 1.3 M images: refused from the header, before inflating.
    let bomb_dir = tmp.path().join("bomb");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut head = vec![0, 0, 8, 3];
    for d in [1_300_000u32, 28, 28] {
        head.extend_from_slice(&d.to_be_bytes());
    }
    gz.write_all(&head).unwrap();
    for _ in 0..1000 {
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let labels = encode(&[60000], &vec![0; 60000]);
    let test_images = encode(&[10000, 28, 28], &vec![0; 10000 * 784]);
    let test_labels = encode(&[10000], &vec![0; 10000]);
    let dir = mnist_dir(&bomb_dir, &bomb, &labels, &test_images, &test_labels);
    let m = init(tmp.path(), "m.safetensors");
    let t0 = Instant::now();
    fails(&["eval", "--model", s(&m), "--data", "mnist", "--data-dir", s(&dir), "--limit", "10"], "dimensions");
    assert!(t0.elapsed() < Duration::from_secs(20), "the bomb was inflated before it was refused");
    // Honest uncompressed copies without a pinned content sum: usable, and every result says so.
    let ok_dir = tmp.path().join("raw");
    let images = encode(&[60000, 28, 28], &vec![7; 60000 * 784]);
    let dir = mnist_dir(&ok_dir, &images, &labels, &test_images, &test_labels);
    let json = tmp.path().join("e.json");
    let (success, _, err) = awt(&[
        "eval",
        "--model",
        s(&m),
        "--data",
        "mnist",
        "--data-dir",
        s(&dir),
        "--limit",
        "10",
        "--attack",
        "none",
        "--json",
        s(&json),
    ]);
    assert!(success, "{err}");
    assert!(err.contains("not verified against pinned checksums"), "no warning: {err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["dataset_verified"], false);
    assert!(v["dataset_unverified"].to_string().contains("unpinned (uncompressed copy)"), "{v}");
    // `data list --verify` fails when a dataset it finds is unusable.
    let (success, out, _) = awt_cmd(&["data", "list", "--verify", "--data-dir", s(&bomb_dir)])
        .output()
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), ()))
        .unwrap();
    assert!(!success && out.contains("UNUSABLE"), "{out}");
}

#[test]
fn a_checksum_mismatch_can_be_accepted_by_the_flag_the_error_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("fashion-mnist");
    std::fs::create_dir_all(&d).unwrap();
    // Real-shaped Fashion-MNIST files whose bytes are not the published ones.
    let enc = |dims: &[usize], v: u8| {
        let n: usize = dims.iter().product();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&awt_data::idx::encode(dims, &vec![v; n])).unwrap();
        gz.finish().unwrap()
    };
    std::fs::write(d.join("train-images-idx3-ubyte.gz"), enc(&[60000, 28, 28], 3)).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte.gz"), enc(&[60000], 1)).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), enc(&[10000, 28, 28], 3)).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte.gz"), enc(&[10000], 1)).unwrap();
    let m = init(tmp.path(), "m.safetensors");
    let base = [
        "eval",
        "--model",
        s(&m),
        "--data",
        "fashion-mnist",
        "--data-dir",
        s(tmp.path()),
        "--limit",
        "5",
        "--attack",
        "none",
    ];
    let err = fails(&base, "--allow-checksum-mismatch");
    assert!(err.contains("SHA-256"), "{err}");
    let mut with = base.to_vec();
    with.push("--allow-checksum-mismatch");
    let (success, _, err) = awt(&with);
    assert!(success && err.contains("MISMATCH accepted"), "{err}");
}

/// A ticket search killed after a checkpoint resumes with `--resume` and ends bit-identical to an
/// uninterrupted one (ticket and search log); the state file goes once the ticket is written; a
/// resume without a state, or with a state of other settings, is an error naming the file.
#[test]
fn a_killed_ticket_search_resumes_bit_identically() {
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path(), "init.safetensors");
    let args = |out: &Path, lr: &'static str| -> Vec<String> {
        [
            "ticket",
            "--method",
            "awt",
            "--density",
            "0.2",
            "--model",
            s(&init),
            "--data",
            "fashion-mnist-mini",
            "--steps",
            "400",
            "--batch",
            "32",
            "--attack-steps",
            "2",
            "--mask-every",
            "10",
            "--lr",
            lr,
            "--checkpoint-every",
            "7",
            "--quiet",
            "--out",
            s(out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let (full, part) = (tmp.path().join("full.safetensors"), tmp.path().join("part.safetensors"));
    ok(&refs(&args(&full, "5e-4")));
    let state = part.with_file_name("part.safetensors.search.state.safetensors");
    fails(&refs(&[args(&part, "5e-4"), vec!["--resume".into()]].concat()), "part.safetensors.search.state.safetensors");
    let mut child = awt_cmd(&refs(&args(&part, "5e-4"))).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    // Past a few checkpoints, so that the log holds steps beyond the last saved state.
    let log = part.with_file_name("part.safetensors.search.jsonl");
    let steps = || std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
    while steps() < 30 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(state.exists(), "no search state after {} logged steps", steps());
    fails(
        &refs(&[args(&part, "1e-3"), vec!["--resume".into()]].concat()),
        "these settings differ: lr=0.001 (saved: 0.0005)",
    );
    // A state an older build saved names the teacher by its legacy hash: it resumes all the same.
    let mut saved = std::fs::read(&state).unwrap();
    let key = b"teacher=";
    let at = saved.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    saved[at..at + 16].copy_from_slice(legacy_hash(&std::fs::read(&init).unwrap()).as_bytes());
    std::fs::write(&state, &saved).unwrap();
    let out = ok(&refs(&[args(&part, "5e-4"), vec!["--resume".into()]].concat()));
    assert!(out.contains("resumed at step"), "{out}");
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert!(read(&full) == read(&part), "the resumed ticket differs from the uninterrupted one");
    assert_eq!(
        std::fs::read_to_string(full.with_file_name("full.safetensors.search.jsonl")).unwrap(),
        std::fs::read_to_string(&log).unwrap(),
        "the resumed search log differs"
    );
    assert!(
        !state.exists() && !full.with_file_name("full.safetensors.search.state.safetensors").exists(),
        "state files left behind"
    );
}
