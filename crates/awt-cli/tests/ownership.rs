//! Reliability, second round: every writing command owns its outputs. One test per defect class a
//! hostile user found in the commands added after the first round (ticket searches, IMP-AT work
//! folders, `dynamics`, training into a folder that is not a run); each fails without its fix.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{awt_cmd, fails, legacy_hash, ok, s};

fn init(dir: &Path) -> PathBuf {
    let p = dir.join("init.safetensors");
    ok(&["init", "--arch", "mlp-784-32-10", "--seed", "1", "--out", s(&p)]);
    p
}

fn ticket_args<'a>(init: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "ticket",
        "--method",
        "ntt",
        "--density",
        "0.2",
        "--model",
        init,
        "--steps",
        steps,
        "--batch",
        "16",
        "--mask-every",
        "5",
        "--quiet",
        "--out",
        out,
    ]
}

/// Class 1: two searches on one `--out`. The second is refused while the first runs, naming the
/// process that holds the output, and the first finishes with a whole log.
#[test]
fn a_second_search_on_the_same_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let out = tmp.path().join("t.safetensors");
    let mut first = awt_cmd(&ticket_args(s(&init), s(&out), "2000")).stderr(Stdio::null()).spawn().unwrap();
    let log = tmp.path().join("t.safetensors.search.jsonl");
    let t0 = Instant::now();
    while !log.exists() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = fails(&ticket_args(s(&init), s(&out), "5"), "is being written by process");
    assert!(err.contains(&first.id().to_string()), "the holder is not named: {err}");
    assert!(first.wait().unwrap().success());
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 2000, "the first search's log was spliced");
    assert!(lines.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    // Once the first is done the output is free again.
    ok(&ticket_args(s(&init), s(&out), "5"));
}

/// Class 3: helper files are named by appending to the output's name, so `t.v1` and `t.v2` keep
/// their own logs (replacing the extension gave both `t.search.jsonl`).
#[test]
fn helpers_of_distinct_outputs_are_distinct() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let (v1, v2) = (tmp.path().join("t.v1"), tmp.path().join("t.v2"));
    ok(&ticket_args(s(&init), s(&v1), "6"));
    ok(&ticket_args(s(&init), s(&v2), "9"));
    let lines = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap().lines().count();
    assert_eq!((lines("t.v1.search.jsonl"), lines("t.v2.search.jsonl")), (6, 9));
    assert!(!tmp.path().join("t.search.jsonl").exists());
}

fn imp_args<'a>(init: &'a str, out: &'a str, density: &'a str) -> Vec<&'a str> {
    vec![
        "prune",
        "--method",
        "imp-at",
        "--density",
        density,
        "--model",
        init,
        "--imp-rounds",
        "2",
        "--imp-epochs",
        "1",
        "--attack-steps",
        "1",
        "--train-limit",
        "128",
        "--out",
        out,
    ]
}

/// Class 2: IMP-AT's work folder remembers the settings that made its rounds. A rerun with other
/// settings is refused, naming them, instead of building on stale rounds (or exiting 0 with nothing
/// written); the same settings continue; an output named like a work folder gets its own.
#[test]
fn imp_rounds_made_by_other_settings_are_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let out = tmp.path().join("imp-0.1");
    ok(&imp_args(s(&init), s(&out), "0.25"));
    let first = std::fs::read(&out).unwrap();
    assert!(tmp.path().join("imp-0.1.imp/settings.txt").exists());
    fails(&imp_args(s(&init), s(&out), "0.1"), "density differ");
    assert_eq!(std::fs::read(&out).unwrap(), first, "a refused rerun changed the ticket");
    let other = tmp.path().join("other-init.safetensors");
    ok(&["init", "--arch", "mlp-784-32-10", "--seed", "2", "--out", s(&other)]);
    fails(&imp_args(s(&other), s(&out), "0.25"), "model differ");
    // The same settings again: the recorded rounds are the run's own, the ticket is the same.
    ok(&imp_args(s(&init), s(&out), "0.25"));
    assert_eq!(std::fs::read(&out).unwrap(), first);
    // Rounds an older build recorded name the initialisation by its legacy hash: they continue, and
    // their settings are written anew with today's hash.
    let settings = tmp.path().join("imp-0.1.imp/settings.txt");
    let today = std::fs::read_to_string(&settings).unwrap();
    let model_line = today.lines().find(|l| l.starts_with("model=")).unwrap().to_string();
    let older = today.replace(&model_line, &format!("model={}", legacy_hash(&std::fs::read(&init).unwrap())));
    assert_ne!(older, today);
    std::fs::write(&settings, &older).unwrap();
    ok(&imp_args(s(&init), s(&out), "0.25"));
    assert_eq!(std::fs::read(&out).unwrap(), first);
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), today);
    // `imp-0.2` has its own work folder (it shared `imp-0.imp` when helpers replaced the extension).
    let out2 = tmp.path().join("imp-0.2");
    ok(&imp_args(s(&init), s(&out2), "0.1"));
    assert!(tmp.path().join("imp-0.2.imp/settings.txt").exists());
    // An output named like a work folder writes the ticket, not into the folder.
    let y = tmp.path().join("y.imp");
    ok(&imp_args(s(&init), s(&y), "0.25"));
    assert!(y.is_file(), "--out y.imp did not write the ticket");
}

/// Trains a small dense or sparse run with kept epochs into `out`.
fn train(start_flag: &str, start: &Path, out: &Path) {
    ok(&[
        "train",
        start_flag,
        s(start),
        "--epochs",
        "1",
        "--train-limit",
        "128",
        "--batch",
        "64",
        "--steps",
        "1",
        "--eval-n",
        "16",
        "--eval-steps",
        "1",
        "--keep-epochs",
        "--quiet",
        "--out",
        s(out),
    ]);
}

/// Classes 4 and 6: `dynamics` refuses an `--out` that is one of its inputs (an epoch checkpoint,
/// the ticket) and inputs that do not belong together (`--dense` and `--run` swapped, an `--init`
/// the run did not start from), instead of destroying a file or printing plausible, wrong numbers.
#[test]
fn dynamics_owns_its_output_and_checks_its_inputs_belong_together() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let init = init(tmp.path());
    ok(&["prune", "--method", "random", "--density", "0.3", "--model", s(&init), "--out", s(&p("t.safetensors"))]);
    train("--init", &init, &p("dense"));
    train("--ticket", &p("t.safetensors"), &p("sparse"));
    let run = |dense: &Path, dense_init: &Path, run: &Path, start: &Path, out: &Path| {
        [
            "dynamics",
            "--dense",
            s(dense),
            "--dense-init",
            s(dense_init),
            "--run",
            s(run),
            "--init",
            s(start),
            "--probe",
            "4",
            "--steps",
            "1",
            "--out",
            s(out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (dense, sparse, ticket) = (p("dense"), p("sparse"), p("t.safetensors"));
    let epoch = p("sparse/epochs/epoch-001.safetensors");
    let before = std::fs::read(&epoch).unwrap();
    let v = run(&dense, &init, &sparse, &ticket, &epoch);
    fails(&args(&v), "would destroy the input");
    assert_eq!(std::fs::read(&epoch).unwrap(), before);
    let v = run(&dense, &init, &sparse, &ticket, &ticket);
    fails(&args(&v), "would destroy the input");
    let v = run(&sparse, &ticket, &dense, &init, &p("d.jsonl"));
    fails(&args(&v), "are --dense and --run swapped?");
    let v = run(&dense, &init, &sparse, &init, &p("d.jsonl"));
    fails(&args(&v), "not from --init");
    let v = run(&dense, &init, &sparse, &ticket, &p("d.jsonl"));
    let (ran, _, said) = common::awt(&args(&v));
    assert!(ran && !said.contains("warning"), "{said}");
    // A run from another seed's initialisation is compared, and said to be.
    let other = p("other.safetensors");
    ok(&["init", "--arch", "mlp-784-32-10", "--seed", "2", "--out", s(&other)]);
    train("--init", &other, &p("other"));
    let v = run(&dense, &init, &p("other"), &other, &p("d2.jsonl"));
    let (ran, _, said) = common::awt(&args(&v));
    assert!(ran && said.contains("--dense-init is seed 1's initialisation and --init seed 2's"), "{said}");
}

/// Class 5: `train --out` into an existing folder that holds a run's file names but is not a run
/// is refused, and the user's files are left as they were.
#[test]
fn training_into_a_folder_that_is_not_a_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let folder = tmp.path().join("mine");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("model.safetensors"), b"the user's model").unwrap();
    std::fs::write(folder.join("metrics.jsonl"), b"the user's metrics\n").unwrap();
    let err = fails(
        &["train", "--init", s(&init), "--epochs", "1", "--train-limit", "64", "--quiet", "--out", s(&folder)],
        "is not a training run",
    );
    assert!(err.contains("model.safetensors") || err.contains("metrics.jsonl"), "{err}");
    assert_eq!(std::fs::read(folder.join("model.safetensors")).unwrap(), b"the user's model");
    assert_eq!(std::fs::read(folder.join("metrics.jsonl")).unwrap(), b"the user's metrics\n");
    // A run killed before it wrote its configuration leaves only its lock file: the same command
    // starts it again (found by the kill-anywhere reliability test, whose kill landed there once).
    let killed = tmp.path().join("killed");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::write(killed.join(".lock"), b"").unwrap();
    ok(&["train", "--init", s(&init), "--epochs", "1", "--train-limit", "64", "--quiet", "--out", s(&killed)]);
    assert!(killed.join("config.toml").exists());
}

/// `--rewind-from` gives, without searching again, the very file and log a search with rewound
/// weights writes; a ticket of another search (or teacher) is refused, and the teacher is known by
/// its weights and settings, not by the build that wrote it.
#[test]
fn a_rewound_ticket_from_a_finished_search_equals_a_rewound_search() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let p = |n: &str| tmp.path().join(n);
    let (transferred, searched, rewound) = (p("t.safetensors"), p("s.safetensors"), p("r.safetensors"));
    ok(&ticket_args(s(&init), s(&transferred), "12"));
    let mut a = ticket_args(s(&init), s(&searched), "12");
    a.extend(["--weights", "rewind"]);
    ok(&a);
    let mut a = ticket_args(s(&init), s(&rewound), "12");
    a.extend(["--weights", "rewind", "--rewind-from", s(&transferred)]);
    let out = ok(&a);
    assert!(out.contains("no search run again"), "{out}");
    assert!(std::fs::read(&searched).unwrap() == std::fs::read(&rewound).unwrap(), "the rewound tickets differ");
    assert_eq!(
        std::fs::read_to_string(p("s.safetensors.search.jsonl")).unwrap(),
        std::fs::read_to_string(p("r.safetensors.search.jsonl")).unwrap()
    );
    // Another search's ticket: refused, naming what it records.
    let x = p("x.safetensors");
    let mut a = ticket_args(s(&init), s(&x), "13");
    a.extend(["--weights", "rewind", "--rewind-from", s(&transferred)]);
    fails(&a, "was not made by this search with transferred weights");
    let mut a = ticket_args(s(&init), s(&x), "12");
    a.extend(["--rewind-from", s(&transferred)]);
    fails(&a, "--rewind-from needs --weights rewind");
    // The same initialisation written again by another build (only its `git_commit` differs) is
    // the search's teacher still; one weight changed is not.
    let bytes = std::fs::read(&init).unwrap();
    let key = b"\"git_commit\":\"";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let end = at + bytes[at..].iter().position(|&b| b == b'"').unwrap();
    let mut rebuilt = bytes.clone();
    rebuilt[at..end].fill(b'f');
    assert_ne!(rebuilt, bytes);
    let again = p("init-again.safetensors");
    std::fs::write(&again, &rebuilt).unwrap();
    let (again_out, nudged_out) = (p("again.safetensors"), p("nudged.safetensors"));
    let mut a = ticket_args(s(&again), s(&again_out), "12");
    a.extend(["--weights", "rewind", "--rewind-from", s(&transferred)]);
    ok(&a);
    assert!(std::fs::read(&rewound).unwrap() == std::fs::read(&again_out).unwrap());
    // A transferred ticket an older build made names its teacher by the legacy hash: still this one's.
    let ticket = std::fs::read(&transferred).unwrap();
    let key = b"\"teacher\":\"";
    let at = ticket.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let mut older = ticket.clone();
    older[at..at + 16].copy_from_slice(legacy_hash(&bytes).as_bytes());
    assert_ne!(older, ticket);
    let older_ticket = p("older.safetensors");
    std::fs::write(&older_ticket, &older).unwrap();
    std::fs::copy(p("t.safetensors.search.jsonl"), p("older.safetensors.search.jsonl")).unwrap();
    let older_out = p("older-rewound.safetensors");
    let mut a = ticket_args(s(&init), s(&older_out), "12");
    a.extend(["--weights", "rewind", "--rewind-from", s(&older_ticket)]);
    ok(&a);
    assert!(std::fs::read(&rewound).unwrap() == std::fs::read(&older_out).unwrap());
    let mut nudged = bytes;
    *nudged.last_mut().unwrap() ^= 1;
    let other = p("init-nudged.safetensors");
    std::fs::write(&other, &nudged).unwrap();
    let mut a = ticket_args(s(&other), s(&nudged_out), "12");
    a.extend(["--weights", "rewind", "--rewind-from", s(&transferred)]);
    fails(&a, "its search did not start from --model");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Class 6: an output path that holds a user's file. `init`, `prune` and `ticket --out`, `ntk
/// --out`, `eval --json` and `inspect --json` replaced whatever was there (a text file, a config,
/// another command's output). Each now replaces only an earlier output of its own kind and refuses
/// anything else, naming the file, before any work; the user's file is left as it was.
#[test]
fn a_users_file_at_an_output_path_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let p = |n: &str| tmp.path().join(n);
    let (user, config) = (p("notes.txt"), p("config.json"));
    std::fs::write(&user, "my notes\n").unwrap();
    std::fs::write(&config, "{\"lr\": 0.1}\n").unwrap();
    let (pruned, kernel, eval, mask) = (p("p.safetensors"), p("k.safetensors"), p("eval.json"), p("mask.json"));
    let args = |a: &str, o: &Path| -> Vec<String> {
        let i = s(&init);
        let a = match a {
            "init" => vec!["init", "--arch", "mlp-784-32-10", "--seed", "2", "--out"],
            "prune" => vec!["prune", "--model", i, "--method", "random", "--density", "0.3", "--out"],
            "ntk" => vec!["ntk", "--model", i, "--n", "4", "--out"],
            "eval" => vec!["eval", "--model", i, "--limit", "4", "--attack", "fgsm", "--json"],
            "inspect" => vec!["inspect", s(&pruned), "--json"],
            _ => ticket_args(i, "", "3").into_iter().filter(|a| !a.is_empty()).collect(),
        };
        a.into_iter().chain([s(o)]).map(String::from).collect()
    };
    // Each command's own earlier output is replaced: run each twice.
    let own: Vec<(&str, PathBuf)> = vec![
        ("init", p("i.safetensors")),
        ("prune", pruned.clone()),
        ("ntk", kernel.clone()),
        ("eval", eval.clone()),
        ("inspect", mask.clone()),
        ("ticket", p("t.safetensors")),
    ];
    for (a, o) in own.iter().chain(&own) {
        ok(&strs(&args(a, o)));
    }
    // Anything else is refused, naming the file and what it is not.
    let refusals: Vec<(&str, &Path, &str)> = vec![
        ("init", &user, "not a model file awt wrote"),
        ("prune", &config, "not a model file awt wrote"),
        ("ticket", &user, "not a model file awt wrote"),
        ("prune", &kernel, "not a model file awt wrote"),
        ("ntk", &pruned, "not a kernel file awt ntk wrote"),
        ("eval", &config, "not an evaluation awt eval wrote"),
        ("eval", &mask, "not an evaluation awt eval wrote"),
        ("inspect", &eval, "not a mask report awt inspect wrote"),
        ("inspect", &user, "not a mask report awt inspect wrote"),
    ];
    for (a, file, what) in refusals {
        let before = std::fs::read(file).unwrap();
        let err = fails(&strs(&args(a, file)), what);
        assert!(err.contains(s(file)) && err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(file).unwrap(), before, "`awt {a}` changed {}", file.display());
    }
    assert_eq!(std::fs::read_to_string(&user).unwrap(), "my notes\n");
    assert!(!p("notes.txt.search.jsonl").exists(), "a refused search began its log");
}

/// Class 7: a search refused by its settings emptied the log of the earlier search at its
/// `--out` (the log was created, truncating it, before the settings were checked), leaving that
/// search's ticket without its log. The log is now replaced only once the new search logs a step.
#[test]
fn a_refused_search_leaves_the_earlier_searchs_log_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let init = init(tmp.path());
    let out = tmp.path().join("t.safetensors");
    let log = tmp.path().join("t.safetensors.search.jsonl");
    ok(&ticket_args(s(&init), s(&out), "4"));
    let before = std::fs::read(&log).unwrap();
    assert_eq!(before.iter().filter(|b| **b == b'\n').count(), 4);
    let mut args = ticket_args(s(&init), s(&out), "4");
    let d = args.iter().position(|a| *a == "--density").unwrap() + 1;
    args[d] = "1e-9";
    fails(&args, "refusing to empty a layer");
    assert_eq!(std::fs::read(&log).unwrap(), before, "the earlier search's log was changed");
    // A refused search at a new output leaves no log behind.
    let other = tmp.path().join("u.safetensors");
    let n = args.len() - 1;
    args[n] = s(&other);
    fails(&args, "refusing to empty a layer");
    assert!(!tmp.path().join("u.safetensors.search.jsonl").exists());
}
