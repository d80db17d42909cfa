//! The `awt` binary end to end: data listing (the hub cache path under HF_HUB_OFFLINE=1),
//! init/inspect, cross-process determinism, and one-line errors on bad input.

use std::path::Path;
use std::process::Command;

fn awt(args: &[&str], envs: &[(&str, &Path)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_awt"));
    c.args(args).env_remove("AWT_DATA_DIR").env("AWT_LOG", "off");
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// A hub cache under `home` (as `HF_HOME`) with an empty snapshot of ylecun/mnist; returns the
/// folder its parquet files go in.
fn mnist_hub_snapshot(home: &Path) -> std::path::PathBuf {
    let folder = home.join("hub/datasets--ylecun--mnist");
    let sha = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), sha).unwrap();
    let snap = folder.join("snapshots").join(sha).join("mnist");
    std::fs::create_dir_all(&snap).unwrap();
    snap
}

#[test]
fn data_list_finds_embedded_and_hub_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    // A hub cache holding ylecun/mnist in the hub's parquet format.
    let split = awt_data::synthetic::prototypes(12, [1, 28, 28], 10, 0.2, 1);
    let snap = mnist_hub_snapshot(tmp.path());
    awt_data::hf::write(&split, "image", &snap.join("train-00000-of-00001.parquet")).unwrap();
    awt_data::hf::write(&split, "image", &snap.join("test-00000-of-00001.parquet")).unwrap();
    let one = Path::new("1");
    let (ok, out, err) = awt(&["data", "list", "--verify"], &[("HF_HOME", tmp.path()), ("HF_HUB_OFFLINE", one)]);
    assert!(ok, "{err}");
    let line = |name: &str| {
        out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{out}")).to_string()
    };
    assert!(
        line("fashion-mnist-mini").contains("train 10000 / test 2000")
            && line("fashion-mnist-mini").contains("all checksums verified")
    );
    let m = line("mnist");
    assert!(m.contains("found") && m.contains("hf-cache") && m.contains("train 12 / test 12"), "{m}");
    assert!(line("cifar10").contains("missing"));
}

/// A parquet file that once crashed the parquet crate (fuzzing): the listing names the file and the
/// cause in one line, and no "panicked at" message of the caught panic reaches stderr.
#[test]
fn a_parquet_file_that_crashes_the_decoder_is_one_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let crash = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/parquet/crash-c3fd7b181a75fe638e6118550720de467779deda");
    let snap = mnist_hub_snapshot(tmp.path());
    for split in ["train", "test"] {
        std::fs::copy(&crash, snap.join(format!("{split}-00000-of-00001.parquet"))).unwrap();
    }
    let one = Path::new("1");
    let (_, out, err) = awt(&["data", "list", "--verify"], &[("HF_HOME", tmp.path()), ("HF_HUB_OFFLINE", one)]);
    let all = format!("{out}{err}");
    assert!(all.contains("malformed parquet"), "{all}");
    assert!(!all.contains("panicked at"), "the caught panic still printed its message:\n{all}");
}

/// `awt numerics` names this CPU's summation order, the same in two processes (the line two
/// machines compare before expecting each other's bits, docs/reproducing.md).
#[test]
fn numerics_names_this_cpus_summation_order() {
    let (ok, out, err) = awt(&["numerics"], &[]);
    assert!(ok, "{err}");
    assert!(out.starts_with("gemm on this CPU: k-blocks of at most "), "{out}");
    assert!(!out.contains("not recognised"), "{out}");
    assert_eq!(awt(&["numerics"], &[]).1, out);
}

#[test]
fn init_is_deterministic_across_processes_and_inspect_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    for (name, seed) in [("a", "0"), ("b", "0"), ("c", "1")] {
        let out = p(name);
        let (ok, _, err) =
            awt(&["init", "--arch", "lenet-300-100", "--seed", seed, "--out", out.to_str().unwrap()], &[]);
        assert!(ok, "{err}");
    }
    let read = |n: &str| std::fs::read(p(n)).unwrap();
    assert!(read("a") == read("b"), "same seed gave different files");
    let tensor = |n: &str| {
        let b = read(n);
        let st = safetensors::SafeTensors::deserialize(&b).unwrap();
        st.tensor("fc1.weight").unwrap().data().to_vec()
    };
    assert!(tensor("a") != tensor("c"), "different seeds gave the same weights");
    let (ok, out, err) = awt(&["inspect", p("a").to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("fc1.weight")
            && out.contains("[300, 784]")
            && out.contains("266610 parameters")
            && out.contains("seed = 0"),
        "{out}"
    );
}

/// A mask that leaves a class without any kept incoming weight, and an input unused: inspect names
/// both in its table and its JSON, and says which classes only their bias reaches.
#[test]
fn inspect_reports_the_units_a_mask_cuts_off() {
    use candle_core::{DType, Device, Tensor};
    let tmp = tempfile::tempdir().unwrap();
    let arch = awt_nets::Arch::Mlp(vec![4, 3, 2]);
    let mut net = awt_nets::Net::init(&arch, awt_nets::Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    // fc1 (3×4): input 2 feeds nothing. fc2 (2×3): class 1 has no incoming weight.
    let fc1 = Tensor::new(&[[1f32, 0., 0., 0.], [0., 1., 0., 1.], [1., 0., 0., 0.]], &Device::Cpu).unwrap();
    let fc2 = Tensor::new(&[[1f32, 1., 0.], [0., 0., 0.]], &Device::Cpu).unwrap();
    net.set_mask("fc1.weight", &fc1).unwrap();
    net.set_mask("fc2.weight", &fc2).unwrap();
    let model = tmp.path().join("m.safetensors");
    awt_nets::save(&net, &model).unwrap();
    let json = tmp.path().join("m.json");
    let (ok, out, err) = awt(&["inspect", model.to_str().unwrap(), "--json", json.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("reachable only through their bias): [1]"), "{out}");
    let fc1_line = out.lines().find(|l| l.starts_with("fc1.weight")).unwrap();
    assert!(fc1_line.trim_end().ends_with("0 / 1"), "{fc1_line}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["classes_without_input"], serde_json::json!([1]));
    assert_eq!(v["layers"][0]["inputs_without_output"], serde_json::json!([2]));
    assert_eq!(v["layers"][1]["outputs_without_input"], serde_json::json!([1]));
    // The JSON may not overwrite the model it describes.
    let (ok, _, err) = awt(&["inspect", model.to_str().unwrap(), "--json", model.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("same file"), "{err}");
}

/// `prune --rescale unit-norm`: the same mask as without it, each unit's kept weights scaled back to
/// its dense norm (recorded in the checkpoint's metadata); refused where there is no initialisation mask.
#[test]
fn rescaled_masks_keep_the_mask_and_each_units_dense_norm() {
    use candle_core::{DType, Device, Tensor};
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let (ok, _, err) = awt(args, &[]);
        assert!(ok, "{args:?}: {err}");
    };
    run(&["init", "--arch", "mlp-784-32-10", "--seed", "3", "--out", &p("init.safetensors")]);
    let init_path = p("init.safetensors");
    let prune = |extra: &[&str], out: &str| {
        let mut a = vec!["prune", "--method", "random", "--density", "0.1", "--model", init_path.as_str()];
        a.extend_from_slice(extra);
        let o = p(out);
        a.extend(["--out", o.as_str()]);
        run(&a);
        awt_nets::load(Path::new(&o), None, DType::F32, &Device::Cpu).unwrap()
    };
    let plain = prune(&[], "plain.safetensors");
    let scaled = prune(&["--rescale", "unit-norm"], "scaled.safetensors");
    let init = awt_nets::load(Path::new(&p("init.safetensors")), None, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(scaled.net.meta.get("rescale").map(String::as_str), Some("unit-norm"));
    assert!(!plain.net.meta.contains_key("rescale"));
    let rows = |t: &Tensor| t.sqr().unwrap().sum(1).unwrap().sqrt().unwrap().to_vec1::<f32>().unwrap();
    for (k, m) in plain.net.masks() {
        let same = scaled.net.masks()[k].eq(m).unwrap().to_dtype(DType::F32).unwrap().mean_all().unwrap();
        assert_eq!(same.to_scalar::<f32>().unwrap(), 1.0, "{k}: the mask changed");
        let (s, d) = (rows(scaled.net.params()[k].as_tensor()), rows(init.net.params()[k].as_tensor()));
        let kept = m.sum(1).unwrap().to_vec1::<f32>().unwrap();
        for ((s, d), kept) in s.iter().zip(&d).zip(&kept) {
            let want = if *kept > 0.0 { *d } else { 0.0 };
            assert!((s - want).abs() <= 1e-4 * d.max(1e-3), "{k}: row norm {s}, dense {d}, kept {kept}");
        }
    }
    let (ok, _, err) = awt(
        &[
            "prune",
            "--method",
            "hydra",
            "--density",
            "0.1",
            "--model",
            &p("init.safetensors"),
            "--rescale",
            "unit-norm",
            "--out",
            &p("h"),
        ],
        &[],
    );
    assert!(!ok && err.contains("--rescale applies to masks at initialisation"), "{err}");
}

#[test]
fn bad_input_exits_nonzero_with_one_line_naming_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("model.pt");
    std::fs::write(&bad, [0x80, 2, 3, 4]).unwrap();
    for (args, needle) in [
        (vec!["init", "--arch", "lenet-7", "--out", "x.safetensors"], "--arch: unknown architecture `lenet-7`"),
        (vec!["inspect", bad.to_str().unwrap()], "model.pt: this is a PyTorch pickle"),
        (vec!["init", "--arch", "conv4", "--init", "zeros", "--out", "x"], "--init: unknown init `zeros`"),
    ] {
        let (ok, out, err) = awt(&args, &[]);
        assert!(!ok, "{args:?} succeeded: {out}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{err}");
    }
}

#[test]
fn ntk_command_writes_the_kernel_and_both_implementations_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    let (ok, _, err) = awt(&["init", "--arch", "lenet-300-100", "--seed", "2", "--out", model.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let read = |p: &Path| {
        let t = candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
        t["ntk"].flatten_all().unwrap().to_vec1::<f64>().unwrap()
    };
    let mut kernels = Vec::new();
    for imp in ["structured", "reference"] {
        let out = tmp.path().join(format!("{imp}.safetensors"));
        let (ok, stdout, err) = awt(
            &[
                "ntk",
                "--model",
                model.to_str().unwrap(),
                "--n",
                "3",
                "--adv",
                "pgd",
                "--f64",
                "--impl",
                imp,
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert!(ok, "{err}");
        assert!(stdout.contains("condition number"), "{stdout}");
        kernels.push(read(&out));
    }
    let scale = kernels[1].iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = kernels[0].iter().zip(&kernels[1]).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert_eq!(kernels[0].len(), 30 * 30);
    assert!(diff <= 1e-10 * scale, "structured and reference kernels differ by {diff}");
}

/// `awt ntk --diagonal`, computed and attacked `--block` examples at a time, is the whole kernel's
/// diagonal blocks (and with `--trace` their traces); the settings it cannot serve are refused.
#[test]
fn ntk_diagonal_is_the_kernels_diagonal_blocks_a_block_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let (ok, _, err) = awt(&["init", "--arch", "lenet5-caffe", "--seed", "2", "--out", &p("m.safetensors")], &[]);
    assert!(ok, "{err}");
    let read = |f: &str| {
        let t = candle_core::safetensors::load(p(f), &candle_core::Device::Cpu).unwrap();
        (t["ntk"].dims().to_vec(), t["ntk"].flatten_all().unwrap().to_vec1::<f64>().unwrap())
    };
    let common = ["ntk", "--model", &p("m.safetensors"), "--n", "5", "--adv", "pgd", "--steps", "3", "--f64"];
    for (extra, out) in
        [(&[][..], "full"), (&["--diagonal", "--block", "2"][..], "diag"), (&["--diagonal", "--trace"], "trace")]
    {
        let (ok, stdout, err) = awt(&[&common[..], extra, &["--out", &p(out)]].concat(), &[]);
        assert!(ok, "{err}");
        assert!(out == "full" || stdout.contains("per-example trace"), "{stdout}");
    }
    let ((fd, full), (dd, diag), (td, trace)) = (read("full"), read("diag"), read("trace"));
    let (n, k) = (5, 10);
    assert_eq!((fd, dd, td), (vec![n * k, n * k], vec![n, k, k], vec![n]));
    let scale = full.iter().fold(0f64, |m, v| m.max(v.abs()));
    for i in 0..n {
        let mut t = 0.0;
        for c in 0..k {
            for c2 in 0..k {
                let (a, b) = (diag[(i * k + c) * k + c2], full[(i * k + c) * n * k + i * k + c2]);
                assert!((a - b).abs() <= 1e-10 * scale, "example {i} [{c}, {c2}]: {a} against the kernel's {b}");
            }
            t += diag[(i * k + c) * k + c];
        }
        assert!((trace[i] - t).abs() <= 1e-10 * scale, "example {i}: trace {} against {t}", trace[i]);
    }
    let refused = |extra: &[&str], needle: &str| {
        let (ok, _, err) = awt(&[&common[..], extra, &["--diagonal", "--out", &p("bad")]].concat(), &[]);
        assert!(!ok && err.contains(needle), "{extra:?}: {err}");
        assert!(!tmp.path().join("bad").exists());
    };
    refused(&["--offset2", "10"], "cannot be used with");
    refused(&["--impl", "reference"], "--diagonal: only the structured implementation");
    refused(&["--spectrum", "always"], "--diagonal: per-example kernels have no spectrum");
}

#[test]
fn prune_train_from_a_config_file_then_an_imp_round_with_rewinding() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let (ok, out, err) = awt(args, &[]);
        assert!(ok, "{args:?}: {err}");
        out
    };
    run(&["init", "--arch", "mlp-784-32-10", "--seed", "1", "--out", &p("init.safetensors")]);
    let out = run(&[
        "prune",
        "--method",
        "snip",
        "--density",
        "0.5",
        "--model",
        &p("init.safetensors"),
        "--batch",
        "64",
        "--out",
        &p("snip.safetensors"),
    ]);
    assert!(out.contains("fc1.weight 0.5000"), "{out}");
    // The config-file form: the same keys as the flags; explicit flags win.
    let cfg = tmp.path().join("run.toml");
    std::fs::write(&cfg, "adv = \"fgsm\"\neps = 0.1\nepochs = 3\nbatch = 64\nopt = \"adam\"\nlr = 0.001\ntrain_limit = 256\neval_n = 64\neval_steps = 3\n").unwrap();
    run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--ticket",
        &p("snip.safetensors"),
        "--epochs",
        "2",
        "--quiet",
        "--out",
        &p("run"),
    ]);
    let written = std::fs::read_to_string(tmp.path().join("run/config.toml")).unwrap();
    assert!(
        written.contains("adv = \"fgsm\"") && written.contains("epochs = 2") && written.contains("train_limit = 256"),
        "{written}"
    );
    assert_eq!(std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap().lines().count(), 2);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["densities"]["fc1.weight"], 0.5);
    // One IMP round: magnitude of the trained weights, among the kept ones, over the init weights.
    run(&[
        "prune",
        "--method",
        "magnitude",
        "--density",
        "0.25",
        "--model",
        &p("run/model.safetensors"),
        "--rewind",
        &p("init.safetensors"),
        "--out",
        &p("imp.safetensors"),
    ]);
    let load = |f: &str| {
        awt_nets::load(std::path::Path::new(&p(f)), None, candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap()
            .net
    };
    let (imp, init, snip) = (load("imp.safetensors"), load("init.safetensors"), load("snip.safetensors"));
    let m = &imp.masks()["fc1.weight"];
    let within =
        m.mul(&(1.0 - &snip.masks()["fc1.weight"]).unwrap()).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(within, 0.0, "IMP kept a weight the previous mask had pruned");
    let expect =
        init.param("fc1.weight").unwrap().as_tensor().mul(m).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(imp.param("fc1.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(), expect);
    // Raising the density in an IMP round is refused.
    let (ok, _, err) = awt(
        &[
            "prune",
            "--method",
            "magnitude",
            "--density",
            "0.9",
            "--model",
            &p("run/model.safetensors"),
            "--rewind",
            &p("init.safetensors"),
            "--out",
            &p("x.safetensors"),
        ],
        &[],
    );
    assert!(!ok && err.contains("IMP only removes weights"), "{err}");
}

#[test]
fn dynamics_of_the_dense_net_against_itself_is_zero_and_a_sparse_net_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let (ok, out, err) = awt(args, &[]);
        assert!(ok, "{args:?}: {err}");
        out
    };
    run(&["init", "--arch", "mlp-784-32-10", "--seed", "3", "--out", &p("init.safetensors")]);
    run(&[
        "prune",
        "--method",
        "random",
        "--density",
        "0.2",
        "--model",
        &p("init.safetensors"),
        "--out",
        &p("t.safetensors"),
    ]);
    let train = |init: &str, flag: &str, out: &str| {
        let mut a = vec!["train", "--arch", "mlp-784-32-10", flag, init, "--epochs", "2", "--train-limit", "256"];
        a.extend(["--batch", "64", "--steps", "2", "--eval-n", "32", "--eval-steps", "2", "--keep-epochs", "--quiet"]);
        a.extend(["--out", out]);
        run(&a);
    };
    train(&p("init.safetensors"), "--init", &p("dense"));
    train(&p("t.safetensors"), "--ticket", &p("sparse"));
    assert!(tmp.path().join("dense/epochs/epoch-002.safetensors").exists());
    let dynamics = |run_dir: &str, init: &str, out: &str| -> Vec<serde_json::Value> {
        let a = ["dynamics", "--dense", &p("dense"), "--dense-init", &p("init.safetensors"), "--run", run_dir];
        let mut a = a.to_vec();
        a.extend(["--init", init, "--probe", "16", "--steps", "2", "--out", out]);
        run(&a);
        std::fs::read_to_string(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    // The dense net against itself: no distance, perfect alignment, equal changes, no loss gap.
    let same = dynamics(&p("dense"), &p("init.safetensors"), &p("same.jsonl"));
    assert_eq!(same.len(), 3, "{same:?}");
    for r in &same {
        assert!(r["rel_distance"].as_f64().unwrap().abs() < 1e-6, "{r}");
        assert!((r["alignment"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{r}");
        assert!((r["sparse_change"].as_f64().unwrap() - r["dense_change"].as_f64().unwrap()).abs() < 1e-6, "{r}");
        if let Some(g) = r.get("loss_gap") {
            assert!(g.as_f64().unwrap().abs() < 1e-6, "{r}");
        }
    }
    assert!(same[2]["dense_change"].as_f64().unwrap() > 0.0, "training moved the kernel: {same:?}");
    // A 20 % random ticket: a different kernel from the start.
    let sparse = dynamics(&p("sparse"), &p("t.safetensors"), &p("sparse.jsonl"));
    assert_eq!(sparse.len(), 3);
    assert!(sparse[0]["rel_distance"].as_f64().unwrap() > 0.05, "{sparse:?}");
    // A run folder from another network is refused, naming it.
    run(&["init", "--arch", "mlp-784-16-10", "--seed", "3", "--out", &p("other.safetensors")]);
    let (ok, _, err) = awt(
        &["dynamics", "--dense", &p("dense"), "--dense-init", &p("other.safetensors"), "--run", &p("sparse")]
            .iter()
            .copied()
            .chain(["--init", &p("t.safetensors"), "--out", &p("bad.jsonl")])
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(!ok && err.contains("other.safetensors"), "{err}");
}

#[test]
fn autoattack_runs_on_every_zoo_net() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    // A small CIFAR-10 folder (binary format, 8 records per file) for conv4.
    let bin = tmp.path().join("cifar10/cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mut r = 1u64;
    let mut file = || -> Vec<u8> {
        let mut v = Vec::new();
        for k in 0..8u8 {
            v.push(k % 10);
            v.extend((0..3072).map(|_| {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (r >> 56) as u8
            }));
        }
        v
    };
    for f in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"] {
        std::fs::write(bin.join(format!("{f}.bin")), file()).unwrap();
    }
    let nets = [
        ("lenet-300-100", "fashion-mnist-mini"),
        ("lenet5-caffe", "fashion-mnist-mini"),
        ("mlp-784-16-10", "fashion-mnist-mini"),
        ("conv4", "cifar10"),
    ];
    for (arch, data) in nets {
        let m = p(&format!("{arch}.safetensors"));
        let (ok, _, err) = awt(&["init", "--arch", arch, "--seed", "0", "--out", &m], &[]);
        assert!(ok, "{arch}: {err}");
        let json = p(&format!("{arch}.json"));
        let args = [
            "eval",
            "--model",
            &m,
            "--data",
            data,
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--limit",
            "6",
            "--attack",
            "autoattack",
            "--apgd-steps",
            "3",
            "--fab-steps",
            "3",
            "--targets",
            "2",
            "--square-queries",
            "20",
            "--json",
            &json,
        ];
        let (ok, out, err) = awt(&args, &[]);
        assert!(ok, "{arch}: {err}");
        for a in ["apgd-ce", "apgd-t", "fab-t", "square"] {
            assert!(out.contains(a), "{arch}: no {a} row in\n{out}");
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let cum = v["cumulative"].as_array().unwrap();
        assert_eq!(cum.len(), 4, "{arch}: {v}");
        let counts: Vec<u64> = cum.iter().map(|c| c["robust_correct"].as_u64().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[1] <= w[0]), "{arch}: cumulative counts rise: {counts:?}");
        assert!(counts[0] <= v["clean_correct"].as_u64().unwrap(), "{arch}");
    }
}

/// `--validation N` holds the last N training images out: `--split validation` is exactly the
/// training split's tail, without the flag it is refused by name, and a training run evaluates on
/// it, trains on the rest, says so and records both in its summary and configuration.
#[test]
fn validation_is_held_out_of_the_training_split() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let (ok, _, err) = awt(&["init", "--arch", "mlp-784-32-10", "--seed", "3", "--out", &p("init.safetensors")], &[]);
    assert!(ok, "{err}");
    let init = p("init.safetensors");
    let eval = |extra: &[&str], json: &str| -> serde_json::Value {
        let mut a = vec!["eval", "--model", &init, "--attack", "pgd", "--steps", "2"];
        a.extend_from_slice(extra);
        let j = p(json);
        a.extend(["--json", j.as_str()]);
        let (ok, _, err) = awt(&a, &[]);
        assert!(ok, "{err}");
        serde_json::from_slice(&std::fs::read(p(json)).unwrap()).unwrap()
    };
    let val = eval(&["--validation", "300", "--split", "validation"], "val.json");
    let tail = eval(&["--split", "train", "--offset", "9700"], "tail.json");
    assert_eq!((val["split"].as_str(), val["n"].as_u64()), (Some("validation"), Some(300)));
    assert_eq!(val["validation_held_out"], 300);
    assert_eq!(val["train_examples_after_hold_out"], 9700);
    for k in ["clean_correct", "robust_correct"] {
        assert_eq!(val[k], tail[k], "{k}: the validation split is not the training split's tail");
    }
    assert!(tail.get("validation_held_out").is_none(), "a record without --validation must not mention it");
    let (ok, _, err) = awt(&["eval", "--model", &p("init.safetensors"), "--split", "validation"], &[]);
    assert!(!ok && err.contains("--split validation needs --validation N"), "{err}");
    let (ok, _, err) = awt(&["eval", "--model", &p("init.safetensors"), "--validation", "10000"], &[]);
    assert!(!ok && err.contains("--validation 10000") && err.contains("cannot hold out 10000"), "{err}");
    let (ok, out, err) = awt(
        &[
            "train",
            "--init",
            &p("init.safetensors"),
            "--adv",
            "none",
            "--epochs",
            "1",
            "--validation",
            "500",
            "--eval-n",
            "50",
            "--quiet",
            "--out",
            &p("run"),
        ],
        &[],
    );
    assert!(ok, "{err}");
    // What it says names the split it evaluated on (it said "test images" here).
    assert!(format!("{out}{err}").contains("on 50 validation images"), "{out}{err}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(p("run/summary.json")).unwrap()).unwrap();
    assert_eq!((summary["eval_split"].as_str(), summary["train_examples"].as_u64()), (Some("validation"), Some(9500)));
    assert!(std::fs::read_to_string(p("run/config.toml")).unwrap().contains("validation = 500"));
}

/// `--output-layer dense`: masks at initialisation (per layer and global, SynFlow's and NTK-SAP's
/// rounds too) keep the output layer whole and count it in the density; the ticket says so in its
/// metadata.
#[test]
fn masks_keep_the_output_layer_dense_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let (ok, _, err) = awt(&["init", "--arch", "lenet-300-100", "--out", &p("init.safetensors")], &[]);
    assert!(ok, "{err}");
    let sap = ["--ntk-sap-rounds", "3", "--ntk-sap-draws", "2", "--ntk-sap-inputs", "16"];
    for (method, alloc, extra) in [
        ("random", "uniform", &[][..]),
        ("synflow", "global", &["--rounds", "5"][..]),
        ("random", "global", &[][..]),
        ("ntk-sap", "global", &sap[..]),
    ] {
        let out = p(&format!("{method}-{alloc}.safetensors"));
        let init = p("init.safetensors");
        let head = ["prune", "--method", method, "--density", "0.02", "--allocation", alloc, "--output-layer", "dense"];
        let args: Vec<&str> = head.iter().chain(extra).chain(&["--model", &init, "--out", &out]).copied().collect();
        let (ok, stdout, err) = awt(&args, &[]);
        assert!(ok, "{method}: {err}");
        assert!(stdout.contains("fc3.weight 1.0000"), "{method}: {stdout}");
        let net =
            awt_nets::load(Path::new(&out), None, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().net;
        let kept: usize = net.masks().values().map(|m| m.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize).sum();
        assert_eq!(net.masks().len(), 3);
        assert!(kept.abs_diff(5324) <= 2, "{method}: {kept} kept");
        assert_eq!(net.meta["output_layer"], "dense");
    }
    // NTK-SAP's draws come from --seed: the same seed gives the same mask, another seed another.
    let mask_of = |seed: &str, name: &str| {
        let out = p(name);
        let init = p("init.safetensors");
        let head = ["prune", "--method", "ntk-sap", "--density", "0.05", "--seed", seed];
        let shuffle: &[&str] = if name.starts_with("shuffled") { &["--shuffle", "layer"] } else { &[] };
        let tail = ["--model", &init, "--out", &out];
        let args: Vec<&str> = head.iter().chain(&sap).chain(shuffle).chain(&tail).copied().collect();
        let (ok, _, err) = awt(&args, &[]);
        assert!(ok, "{err}");
        let net =
            awt_nets::load(Path::new(&out), None, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().net;
        net.masks()["fc1.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let (a, b, c) = (mask_of("3", "a.safetensors"), mask_of("3", "b.safetensors"), mask_of("4", "c.safetensors"));
    assert_eq!(a, b, "the same seed");
    assert_ne!(a, c, "another seed");
    // --shuffle layer: the same layer's kept count, other weights kept.
    let shuffled = mask_of("3", "shuffled.safetensors");
    let kept = |m: &[f32]| m.iter().filter(|x| **x == 1.0).count();
    assert_eq!(kept(&shuffled), kept(&a));
    assert_ne!(shuffled, a, "a shuffled mask");
}

/// At a constant learning rate a training's kept epoch k is a k-epoch training of the same net
/// bit for bit (the epochs still to come change nothing before them): what lets the study start
/// HYDRA from the dense run's kept epoch instead of training that net again (xtask's
/// `link_pretraining`). Under a cosine schedule the two differ, as that rule expects.
#[test]
fn a_dense_runs_kept_epoch_is_a_shorter_training_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let (ok, _, err) = awt(args, &[]);
        assert!(ok, "{args:?}: {err}");
    };
    run(&["init", "--arch", "mlp-784-32-10", "--seed", "5", "--out", &p("init.safetensors")]);
    let train = |epochs: &str, keep: bool, schedule: &str, out: &str| {
        let init = p("init.safetensors");
        let mut a = vec!["train", "--init", &init, "--epochs", epochs, "--train-limit", "256"];
        a.extend(["--batch", "64", "--steps", "2", "--eval-n", "32", "--eval-steps", "2", "--quiet"]);
        a.extend(["--schedule", schedule, "--seed", "5"]);
        if keep {
            a.push("--keep-epochs");
        }
        let out = p(out);
        a.extend(["--out", &out]);
        run(&a);
    };
    let tensors = |file: &str| -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(file).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut v: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(k, t)| (k, t.data().to_vec())).collect();
        v.sort();
        v
    };
    train("3", true, "constant", "long");
    train("2", false, "constant", "short");
    let kept = tensors(&p("long/epochs/epoch-002.safetensors"));
    assert!(!kept.is_empty());
    assert_eq!(kept, tensors(&p("short/model.safetensors")));
    assert_ne!(kept, tensors(&p("long/model.safetensors")));
    train("3", true, "cosine", "long-cos");
    train("2", false, "cosine", "short-cos");
    assert_ne!(tensors(&p("long-cos/epochs/epoch-002.safetensors")), tensors(&p("short-cos/model.safetensors")));
}

/// `--eps-curve`: each ε's record is the one `awt eval --eps ε` writes (the same seeds, the same
/// outcomes), the curve never rises and is each ε's count less its reversals, ε = 0 is clean
/// accuracy, and bad lists are refused before anything is written.
#[test]
fn a_security_curve_is_each_eps_evaluation_made_monotone() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let (ok, _, err) = awt(&["init", "--arch", "mlp-784-32-10", "--seed", "5", "--out", &p("init.safetensors")], &[]);
    assert!(ok, "{err}");
    let train = ["train", "--init", &p("init.safetensors"), "--adv", "none", "--epochs", "1", "--eval-n", "20"];
    let (ok, _, err) = awt(&[&train[..], &["--quiet", "--out", &p("run")]].concat(), &[]);
    assert!(ok, "{err}");
    let model = p("run/model.safetensors");
    let common = ["eval", "--model", &model, "--limit", "300", "--attack", "pgd", "--steps", "5", "--restarts", "1"];
    let read = |f: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p(f)).unwrap()).unwrap() };
    let eps = ["0", "0.01", "0.03", "0.06", "0.1"];
    let (ok, out, err) =
        awt(&[&common[..], &["--eps-curve", &eps.join(","), "--json", &p("curve.json")]].concat(), &[]);
    assert!(ok, "{err}");
    assert!(out.contains("a security curve") && out.contains("reversals"), "{out}");
    let curve = read("curve.json");
    let record: awt_runs::records::Curve = serde_json::from_value(curve.clone()).unwrap();
    assert_eq!(record.eps, vec![0.0, 0.01, 0.03, 0.06, 0.1]);
    for (i, e) in eps.iter().enumerate() {
        let single = format!("single-{i}.json");
        let (ok, _, err) = awt(&[&common[..], &["--eps", e, "--json", &p(&single)]].concat(), &[]);
        assert!(ok, "{err}");
        let (mut a, mut b) = (curve["evals"][i].clone(), read(&single));
        for v in [&mut a, &mut b] {
            v.as_object_mut().unwrap().remove("wall_seconds");
        }
        assert_eq!(a, b, "ε = {e}: the curve's record differs from `awt eval --eps {e}`'s");
    }
    let alone: Vec<u64> = record.evals.iter().map(|e| e.robust_correct.unwrap()).collect();
    assert_eq!(record.robust_correct[0], record.evals[0].clean_correct, "ε = 0 is clean accuracy");
    assert_eq!(record.reversals[0], 0);
    for i in 0..eps.len() {
        assert_eq!(record.robust_correct[i], alone[i] - record.reversals[i], "ε index {i}: {record:?}");
        if i > 0 {
            assert!(record.robust_correct[i] <= record.robust_correct[i - 1], "the curve rose: {record:?}");
        }
        let acc = record.robust_correct[i] as f64 / 300.0;
        assert!((record.robust_accuracy[i] - acc).abs() < 1e-15);
    }
    assert!(record.robust_correct[4] < record.robust_correct[0], "PGD at ε = 0.1 broke nothing: {record:?}");
    // Bad lists: one line naming the flag, and no record written.
    let bad = |list: &[&str], needle: &str| {
        let j = p("bad.json");
        let (ok, _, err) = awt(&[&common[..], list, &["--json", &j]].concat(), &[]);
        assert!(!ok && err.contains(needle), "{list:?}: {err}");
        assert!(!Path::new(&j).exists(), "{list:?} wrote a record");
    };
    bad(&["--eps-curve", "0.1,0.05"], "--eps-curve must be strictly ascending");
    bad(&["--eps-curve", "0.1,0.1"], "--eps-curve must be strictly ascending");
    bad(&["--eps-curve", "-0.1,0.1"], "--eps-curve: every ε must be a finite number ≥ 0");
    bad(&["--eps-curve", "0.1,nan"], "--eps-curve");
    bad(&["--eps-curve", "0.1", "--eps", "0.1"], "cannot be used with");
    let (ok, _, err) = awt(&["eval", "--model", &model, "--attack", "none", "--eps-curve", "0.1"], &[]);
    assert!(!ok && err.contains("--eps-curve needs an attack"), "{err}");
}
