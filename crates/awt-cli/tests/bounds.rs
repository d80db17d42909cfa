//! Reliability, second round: every allocation sized by a setting is estimated and refused, naming
//! the setting, before it is made; inputs are read only from regular files of plausible size.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{awt, s};

fn fails_fast(args: &[&str], needle: &str) {
    let t0 = Instant::now();
    let (ok, _, err) = awt(args);
    assert!(!ok && err.contains(needle), "{args:?}: {err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{args:?}: refused only after {:?}", t0.elapsed());
}

/// Class 13: `ntk --n`, `dynamics --probe` and `ticket --batch` are refused with their memory estimate before
/// allocating; `--probe` past the test split is an error, not a silent cap; the spectrum's O(n³) is
/// skipped above dimension 2,000 unless asked for.
#[test]
fn allocations_sized_by_a_setting_are_estimated_first() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    assert!(awt(&["init", "--arch", "mlp-784-32-10", "--out", s(&p("i.safetensors"))]).0);
    fails_fast(
        &["ntk", "--model", s(&p("i.safetensors")), "--n", "1000000", "--out", s(&p("k"))],
        "--n 1000000: needs about",
    );
    assert!(!p("k").exists());
    // The search's signals and kernels grow with --batch (issue 25): refused before they are made.
    fails_fast(
        &[
            "ticket",
            "--model",
            s(&p("i.safetensors")),
            "--data",
            "fashion-mnist-mini",
            "--method",
            "awt",
            "--density",
            "0.05",
            "--steps",
            "1",
            "--batch",
            "1000000000",
            "--out",
            s(&p("t.safetensors")),
        ],
        "--batch 1000000000: needs about",
    );
    assert!(!p("t.safetensors").exists());
    let (ok, out, err) = awt(&["ntk", "--model", s(&p("i.safetensors")), "--n", "210", "--out", s(&p("k"))]);
    assert!(ok, "{err}");
    assert!(out.contains("spectrum not computed (dimension 2100"), "{out}");
    let (ok, out, _) = awt(&["ntk", "--model", s(&p("i.safetensors")), "--n", "20", "--out", s(&p("k2"))]);
    assert!(ok && out.contains("condition number"), "{out}");
    // Two tiny runs to compare.
    for (flag, start, dir) in [("--init", "i.safetensors", "dense"), ("--init", "i.safetensors", "run")] {
        let (ok, _, err) = awt(&[
            "train",
            flag,
            s(&p(start)),
            "--epochs",
            "1",
            "--train-limit",
            "64",
            "--batch",
            "64",
            "--steps",
            "1",
            "--eval-n",
            "8",
            "--eval-steps",
            "1",
            "--keep-epochs",
            "--quiet",
            "--out",
            s(&p(dir)),
        ]);
        assert!(ok, "{err}");
    }
    let dynamics = |probe: &str| {
        vec![
            "dynamics".to_string(),
            "--dense".into(),
            s(&p("dense")).into(),
            "--dense-init".into(),
            s(&p("i.safetensors")).into(),
            "--run".into(),
            s(&p("run")).into(),
            "--init".into(),
            s(&p("i.safetensors")).into(),
            "--probe".into(),
            probe.into(),
            "--steps".into(),
            "1".into(),
            "--out".into(),
            s(&p("d.jsonl")).into(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    fails_fast(&args(&dynamics("1000000")), "--probe 1000000: needs about");
    fails_fast(&args(&dynamics("2001")), "--probe 2001: the test split of fashion-mnist-mini has 2000 images");
}

/// Class 14: a device, a FIFO or a folder given as a checkpoint or configuration is refused at once
/// (reading /dev/zero never ends; a FIFO hangs), naming the flag or file.
#[test]
fn inputs_must_be_regular_files() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for model in ["/dev/zero", s(&fifo), s(tmp.path())] {
        let out = tmp.path().join("x.safetensors");
        fails_fast(&["prune", "--method", "random", "--density", "0.5", "--model", model, "--out", s(&out)], model);
        fails_fast(&["eval", "--model", model, "--limit", "10"], "cannot read: ");
    }
    let run = tmp.path().join("run");
    for config in ["/dev/zero", s(&fifo)] {
        fails_fast(&["train", "--config", config, "--epochs", "1", "--out", s(&run)], "--config");
    }
}
