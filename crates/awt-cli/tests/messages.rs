//! Reliability, second round: each error names the flag or file at fault (class 15). Every case
//! here was once reported under another flag, or not at all.

mod common;
use common::{awt, s};
use std::path::Path;

fn says(args: &[&str], needle: &str) {
    let (ok, _, err) = awt(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn errors_name_the_flag_at_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let init = p("i.safetensors");
    assert!(awt(&["init", "--arch", "mlp-784-32-10", "--out", s(&init)]).0);
    let run = p("run");
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--init", s(&init), "--epochs", "1", "--train-limit", "64", "--quiet"];
        a.extend_from_slice(extra);
        a.extend(["--out", s(&run)]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    says(&refs(&train(&["--eps", "0"])), "--eps must be > 0 with --adv pgd");
    says(&refs(&train(&["--schedule", "multistep"])), "--schedule multistep needs --milestones");
    says(&refs(&train(&["--milestones", "3"])), "--milestones is not read by --schedule constant: only by multistep");
    let (ok, _, err) =
        awt(&refs(&train(&["--opt", "adamw", "--wd", "1e10", "--steps", "1", "--eval-n", "8", "--batch", "16"])));
    assert!(!ok && err.contains("training diverged"), "{err}");
    says(&["ntk", "--model", s(&init), "--n", "8", "--offset2", "1995", "--out", s(&p("k"))], "--offset2 1995 --n 8");
    says(&["ntk", "--model", s(&init), "--n", "8", "--eps", "0.2", "--out", s(&p("k"))], "--adv");
    says(&["eval", "--model", s(&init), "--limit", "0"], "--limit must be ≥ 1");
    // Was reported as a range past the split's end (`--offset 0 --n 0: the test split … has 2000`).
    says(&["ntk", "--model", s(&init), "--n", "0", "--out", s(&p("k"))], "--n must be ≥ 1");
    // An output that cannot be written is found before the work, not after it.
    let t0 = std::time::Instant::now();
    says(&["eval", "--model", s(&init), "--json", s(&init.join("e.json"))], "--json");
    says(&["ntk", "--model", s(&init), "--n", "8", "--out", s(&init.join("k"))], "--out");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "refused only after the work");
    says(
        &[
            "prune",
            "--method",
            "imp-at",
            "--density",
            "0.5",
            "--model",
            s(&init),
            "--imp-epochs",
            "0",
            "--out",
            s(&p("t")),
        ],
        "--imp-epochs must be ≥ 1",
    );
    says(
        &[
            "prune",
            "--method",
            "hydra",
            "--density",
            "0.5",
            "--model",
            s(&init),
            "--hydra-epochs",
            "1",
            "--out",
            s(&p("h")),
        ],
        "--hydra-epochs must be ≥ 2",
    );
    // A flag the method does not read is refused, not dropped.
    let unread = p("u");
    let prune = |method: &str, extra: &[&str]| -> Vec<String> {
        let head = ["prune", "--method", method, "--density", "0.5", "--model", s(&init), "--out", s(&unread)];
        head.iter().chain(extra).map(|x| x.to_string()).collect()
    };
    for (method, extra, msg) in [
        ("snip", &["--hydra-epochs", "3"][..], "--hydra-epochs is not read by --method snip: only by hydra"),
        (
            "random",
            &["--step-size", "0.01"][..],
            "--step-size is not read by --method random: only by hydra and imp-at",
        ),
        ("hydra", &["--imp-rounds", "2"][..], "--imp-rounds is not read by --method hydra: only by imp-at"),
        ("synflow", &["--ntk-sap-draws", "2"][..], "--ntk-sap-draws is not read by --method synflow: only by ntk-sap"),
        ("ntk-sap", &["--ntk-sap-eps", "0"][..], "--ntk-sap-eps must be a finite number > 0"),
        ("ntk-sap", &["--ntk-sap-inputs", "100000"][..], "--ntk-sap-inputs must be in 1..=4096"),
        ("hydra", &["--shuffle", "layer"][..], "--shuffle applies to masks at initialisation"),
    ] {
        let args = prune(method, extra);
        says(&args.iter().map(String::as_str).collect::<Vec<_>>(), msg);
    }
    assert!(!unread.exists(), "an output was written");
    let ticket =
        ["ticket", "--method", "ntt", "--density", "0.5", "--model", s(&init), "--steps", "1", "--out", s(&unread)];
    for (flag, value) in [("--eps", "0.2"), ("--attack-steps", "3"), ("--inputs", "clean+adversarial")] {
        let args: Vec<&str> = ticket.iter().copied().chain([flag, value]).collect();
        says(&args, &format!("{flag} is not read by --method ntt: only by awt"));
    }
    assert!(!unread.exists(), "an output was written");
    // The same for the training objective, optimiser and schedule, and for the evaluation's attack.
    let train = ["train", "--init", s(&init), "--epochs", "1", "--out", s(&unread)];
    for (extra, msg) in [
        (&["--adv", "none", "--steps", "5"][..], "--steps is not read by --adv none: only by pgd and trades"),
        (&["--beta", "3"][..], "--beta is not read by --adv pgd: only by trades"),
        (&["--opt", "adam", "--momentum=0.5"][..], "--momentum is not read by --opt adam: only by sgd"),
        (&["--gamma", "0.5"][..], "--gamma is not read by --schedule constant: only by multistep"),
        (
            &["--schedule", "cosine", "--warmup", "0.1"][..],
            "--warmup is not read by --schedule cosine: only by onecycle",
        ),
    ] {
        let args: Vec<&str> = train.iter().chain(extra).copied().collect();
        says(&args, msg);
    }
    assert!(!unread.exists(), "an output was written");
    // A --config file: an unknown key is named with its file; a key its choice does not read is
    // refused where it differs from its default (a run's own config.toml holds them at their defaults).
    for (text, msg) in [
        ("betta = 3\n", "key `betta` is not a setting of awt train"),
        ("gamma = 0.5\n", "c.toml: --gamma is not read by --schedule constant: only by multistep"),
        ("opt = \"adam\"\nnesterov = true\n", "c.toml: --nesterov is not read by --opt adam: only by sgd"),
        // A value of the wrong type is named with its file and key (it was "--epochs: invalid digit",
        // or clap's bare "unexpected argument '3'"), and a list for a one-value setting is refused
        // (`eps = [1]` trained at ε = 1).
        ("epochs = \"x\"\n", "c.toml: key `epochs`: invalid value 'x' for '--epochs"),
        ("eps = [1]\n", "c.toml: key `eps` cannot be [1] (a one-value setting)"),
        ("quiet = 3\n", "c.toml: key `quiet` is a switch: true or false, not 3"),
    ] {
        let cfg = p("c.toml");
        std::fs::write(&cfg, text).unwrap();
        says(&["train", "--config", s(&cfg), "--init", s(&init), "--out", s(&unread)], msg);
    }
    assert!(!unread.exists(), "an output was written");
    let eval = ["eval", "--model", s(&init), "--limit", "10", "--json", s(&unread)];
    for (extra, msg) in [
        (
            &["--attack", "autoattack", "--steps", "20"][..],
            "--steps is not read by --attack autoattack: only by pgd and worst",
        ),
        (&["--apgd-steps", "50"][..], "--apgd-steps is not read by --attack pgd: only by"),
        (&["--attack", "none", "--restarts", "2"][..], "--restarts is not read by --attack none: only by"),
        (&["--attack", "apgd-ce", "--square-queries", "10"][..], "--square-queries is not read by --attack apgd-ce"),
    ] {
        let args: Vec<&str> = eval.iter().chain(extra).copied().collect();
        says(&args, msg);
    }
    assert!(!unread.exists(), "an output was written");
    says(&["eval", "--model", s(&init), "--data", "fashion-mnist", "--data-dir", s(&p("typo"))], "--data-dir");
    says(&["eval", "--model", s(&init), "--data", "fashion-mnist", "--data-dir", s(&p("typo"))], "no such folder");
}

/// HYDRA's work folder holds a `config.toml` that is TOML (it held a debug dump).
#[test]
fn hydra_writes_its_configuration_as_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let (init, out) = (tmp.path().join("i.safetensors"), tmp.path().join("h.safetensors"));
    assert!(awt(&["init", "--arch", "mlp-784-32-10", "--out", s(&init)]).0);
    let (ok, _, err) = awt(&[
        "prune",
        "--method",
        "hydra",
        "--density",
        "0.3",
        "--model",
        s(&init),
        "--hydra-epochs",
        "2",
        "--train-limit",
        "64",
        "--attack-steps",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(tmp.path().join("h.safetensors.hydra/config.toml")).unwrap();
    let t: toml::Table = text.parse().unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    assert_eq!(t["density"].as_float(), Some(0.3));
}

/// `--device`: a wrong value and a device this binary cannot open are one line naming the flag;
/// `auto` on a machine without CUDA computes on the CPU and records nothing about it (CPU records
/// keep their bytes).
#[test]
fn the_device_flag_names_itself_and_auto_falls_back_to_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let init = tmp.path().join("i.safetensors");
    assert!(awt(&["init", "--arch", "mlp-784-32-10", "--out", s(&init)]).0);
    let eval = |device: &str, json: &std::path::Path| {
        awt(&["eval", "--model", s(&init), "--limit", "8", "--steps", "2", "--device", device, "--json", s(json)])
    };
    says(&["eval", "--model", s(&init), "--device", "gpu"], "--device: device `gpu` is not one of cpu, cuda");
    if !cfg!(feature = "cuda") {
        says(
            &["eval", "--model", s(&init), "--device", "cuda:0"],
            "--device cuda:0: this awt binary was built without CUDA",
        );
    }
    let (cpu, auto) = (tmp.path().join("cpu.json"), tmp.path().join("auto.json"));
    assert!(eval("cpu", &cpu).0);
    let (ok, _, err) = eval("auto", &auto);
    assert!(ok, "{err}");
    let read = |p: &std::path::Path| {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        (v["clean_correct"].clone(), v["robust_correct"].clone(), v.get("device").cloned())
    };
    if !cfg!(feature = "cuda") {
        assert_eq!(read(&cpu), read(&auto));
        assert_eq!(read(&auto).2, None);
    }
}

/// `awt check-device --device cpu` is the device check's dry run: the CPU's device-generic path
/// against its kernels agrees to rounding (the numbers a GPU run reports in the same form).
#[test]
fn the_device_checks_dry_run_agrees_to_rounding() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("check.json");
    let (ok, _, err) = awt(&["check-device", "--n", "32", "--reps", "0", "--epoch-n", "0", "--json", s(&json)]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["device"], "cpu (device-generic path)");
    let nets = v["nets"].as_array().unwrap();
    assert_eq!(nets.len(), 2);
    for n in nets {
        let a = &n["agreement"];
        for k in
            ["logits_rel", "input_grad_rel", "weight_grad_rel_max", "ntk64_full_rel", "search_step_weights_rel_max"]
        {
            let x = a[k].as_f64().unwrap();
            assert!(x < 1e-5, "{}: {k} = {x}", n["arch"]);
        }
        assert_eq!(a["pgd20_robust"]["examples_differing"], 0);
        assert_eq!(a["search_step_mask_entries_differing"], 0);
        assert_eq!(a["same_class"], "32/32");
    }
}

/// A method given a net of the other kind is said so on stderr, and still runs: a method at
/// initialisation (or a search's teacher) given a trained net, HYDRA given an initialisation.
/// Without it such a run looked like the published method (`awt prune --method hydra` on an
/// initialisation prunes nothing HYDRA's paper prunes).
#[test]
fn a_method_given_a_net_of_the_other_kind_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let init = p("i.safetensors");
    assert!(awt(&["init", "--arch", "mlp-784-32-10", "--out", s(&init)]).0);
    let run = p("run");
    let train = [
        "train",
        "--init",
        s(&init),
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--eval-n",
        "8",
        "--quiet",
        "--keep-epochs",
    ];
    assert!(awt(&[&train[..], &["--out", s(&run)]].concat()).0);
    let trained = run.join("model.safetensors");
    let prune = |model: &Path, method: &str| {
        let out = p(&format!("{method}.safetensors"));
        let args = ["prune", "--method", method, "--density", "0.3", "--model", s(model), "--out", s(&out)];
        let extra = ["--hydra-epochs", "2", "--train-limit", "64"];
        let (ok, _, err) = awt(&[&args[..], if method == "hydra" { &extra[..] } else { &[] }].concat());
        assert!(ok, "{err}");
        err
    };
    let said = prune(&trained, "snip");
    assert!(said.contains("is a trained net (pgd") && said.contains("but snip works on an initialisation"), "{said}");
    assert!(!prune(&init, "snip").contains("warning"));
    let said = prune(&init, "hydra");
    assert!(said.contains("records no training") && said.contains("but hydra prunes a trained net"), "{said}");
    // xtask's runner stops a run on exactly this line (`refuse_wrong_kind_of_net`).
    assert!(said.lines().any(|l| l.starts_with("warning: --model") && l.contains("as published")), "{said}");
    assert!(!prune(&trained, "hydra").contains("warning"));
    // An epoch checkpoint is a trained net too (the quick grid's HYDRA prunes one).
    let epoch = run.join("epochs").join("epoch-001.safetensors");
    assert!(!prune(&epoch, "hydra").contains("warning"));
    assert!(prune(&epoch, "snip").contains("is a trained net (epoch 1 of a training run)"));
    let search = ["ticket", "--method", "ntt", "--density", "0.3", "--steps", "2", "--batch", "16", "--quiet"];
    let (ok, _, err) = awt(&[&search[..], &["--model", s(&trained), "--out", s(&p("t.safetensors"))]].concat());
    assert!(ok && err.contains("but ntt's search works on an initialisation"), "{err}");
}
