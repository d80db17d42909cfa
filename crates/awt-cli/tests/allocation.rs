//! `--layer-densities-from`: a search (`awt ticket`) or a score (`awt prune`) given another mask's
//! allocation over layers keeps that mask's count in every layer, by its own criterion, and refuses a
//! file it cannot use.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{fails, ok, s};

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Each layer's kept count and mask of a masked checkpoint.
fn masks(p: &Path) -> BTreeMap<String, (usize, Vec<f32>)> {
    let net = awt_nets::load(p, None, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().net;
    net.masks()
        .iter()
        .map(|(k, m)| {
            let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (k.clone(), (v.iter().filter(|x| **x != 0.0).count(), v))
        })
        .collect()
}

#[test]
fn a_search_keeps_another_masks_layer_counts_and_refuses_a_file_it_cannot_use() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let init = p("init.safetensors");
    ok(&["init", "--arch", "lenet-300-100", "--seed", "2", "--out", s(&init)]);
    let prune = |alloc: &str, density: &str, output: &str, out: &Path| {
        let a = ["prune", "--method", "random", "--density", density, "--allocation", alloc, "--seed", "7"];
        let b = ["--output-layer", output, "--model", s(&init), "--out", s(out)];
        ok(&[&a[..], &b[..]].concat());
    };
    let (global, pruned_out) = (p("global.safetensors"), p("global-pruned-out.safetensors"));
    prune("global", "0.05", "dense", &global);
    prune("global", "0.05", "pruned", &pruned_out);
    let ticket = |density: &str, from: Option<&Path>, out: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["ticket", "--method", "awt", "--density", density, "--model", s(&init)]
            .iter()
            .chain(&["--steps", "30", "--batch", "32", "--attack-steps", "2", "--mask-every", "10", "--seed", "3"])
            .chain(&["--output-layer", "dense", "--quiet", "--out", s(out)])
            .map(|x| x.to_string())
            .collect();
        if let Some(f) = from {
            a.extend(["--layer-densities-from".to_string(), s(f).to_string()]);
        }
        a
    };
    let (given, own) = (p("given.safetensors"), p("own.safetensors"));
    ok(&refs(&ticket("0.05", Some(&global), &given)));
    ok(&refs(&ticket("0.05", None, &own)));
    let (g, t, u) = (masks(&global), masks(&given), masks(&own));
    for k in ["fc1.weight", "fc2.weight", "fc3.weight"] {
        assert_eq!(t[k].0, g[k].0, "{k}: the given count");
    }
    for k in ["fc1.weight", "fc2.weight"] {
        assert!(t[k].1 != g[k].1, "{k}: chosen by the search, not copied");
    }
    assert_ne!(u["fc1.weight"].0, g["fc1.weight"].0, "without the flag the search keeps its own allocation");
    assert_eq!(t["fc3.weight"].0, 1000, "the output layer kept whole");
    let meta = awt_nets::load(&given, None, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().net.meta;
    assert!(meta["search"].contains(&format!("layer_keep=fc1.weight:{}", g["fc1.weight"].0)), "{}", meta["search"]);
    // Files it cannot use, each named.
    let bad = p("bad.safetensors");
    let e = fails(&refs(&ticket("0.05", Some(&init), &bad)), "--layer-densities-from");
    assert!(e.contains("no mask"), "{e}");
    let e = fails(&refs(&ticket("0.1", Some(&global), &bad)), "density 0.1");
    assert!(e.contains("layer counts keep"), "{e}");
    fails(&refs(&ticket("0.05", Some(&pruned_out), &bad)), "fc3.weight");
    let other = p("mlp.safetensors");
    ok(&["init", "--arch", "mlp-784-32-10", "--out", s(&other)]);
    fails(&refs(&ticket("0.05", Some(&other), &bad)), "--layer-densities-from");
    fails(&refs(&ticket("0.05", Some(&global), &global)), "--out");
    assert!(!bad.exists(), "nothing written on a refusal");
    assert_eq!(masks(&global), g, "the given file is left as it was");
}

#[test]
fn a_score_keeps_another_masks_layer_counts_and_refuses_what_it_cannot_use() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let init = p("init.safetensors");
    ok(&["init", "--arch", "lenet-300-100", "--seed", "4", "--out", s(&init)]);
    let prune = |method: &str, density: &str, more: &[&str], out: &Path| -> Vec<String> {
        let a = ["prune", "--method", method, "--density", density, "--seed", "5", "--output-layer", "dense"];
        // Each method's own settings, small.
        let b: &[&str] = match method {
            "snip" => &["--batch", "32"],
            "synflow" => &["--rounds", "5"],
            "ntk-sap" => &["--ntk-sap-rounds", "2", "--ntk-sap-draws", "1", "--ntk-sap-inputs", "8"],
            _ => &[],
        };
        let c = ["--model", s(&init), "--out", s(out)];
        [&a[..], b, more, &c[..]].concat().iter().map(|x| x.to_string()).collect()
    };
    let erk = p("erk.safetensors");
    ok(&refs(&prune("random", "0.05", &["--allocation", "erk"], &erk)));
    let e = masks(&erk);
    let from = ["--layer-densities-from", s(&erk)];
    for method in ["magnitude", "snip", "synflow", "ntk-sap"] {
        let (held, own) = (p(&format!("{method}-held.safetensors")), p(&format!("{method}.safetensors")));
        ok(&refs(&prune(method, "0.05", &from, &held)));
        ok(&refs(&prune(method, "0.05", &[], &own)));
        let (h, o) = (masks(&held), masks(&own));
        for k in ["fc1.weight", "fc2.weight", "fc3.weight"] {
            assert_eq!(h[k].0, e[k].0, "{method}, {k}: the given count");
        }
        assert_ne!(o["fc1.weight"].0, e["fc1.weight"].0, "{method}: without the flag, its own allocation");
        assert!(h["fc1.weight"].1 != e["fc1.weight"].1, "{method}: its own choice, not the given mask");
        let meta = awt_nets::load(&held, None, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().net.meta;
        assert_eq!(meta["allocation"], "counts", "{method}");
        assert!(meta["layer_keep"].contains(&format!("fc1.weight:{}", e["fc1.weight"].0)), "{}", meta["layer_keep"]);
    }
    // What it cannot use, each named, and nothing written.
    let bad = p("bad.safetensors");
    fails(&refs(&prune("snip", "0.05", &[&from[..], &["--allocation", "global"]].concat(), &bad)), "--allocation");
    let e1 = fails(&refs(&prune("snip", "0.1", &from, &bad)), "--layer-densities-from");
    assert!(e1.contains("layer counts keep"), "{e1}");
    let e2 = fails(&refs(&prune("snip", "0.05", &["--layer-densities-from", s(&init)], &bad)), "no mask");
    assert!(e2.contains("--layer-densities-from"), "{e2}");
    fails(&refs(&prune("random", "0.05", &from, &erk)), "--out");
    let rewind = ["--rewind", s(&init)];
    fails(&refs(&prune("magnitude", "0.05", &[&from[..], &rewind[..]].concat(), &bad)), "--layer-densities-from");
    assert!(!bad.exists(), "nothing written on a refusal");
    assert_eq!(masks(&erk), e, "the given file is left as it was");
}
