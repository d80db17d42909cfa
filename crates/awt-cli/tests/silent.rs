//! Reliability, second round: results that were silently wrong. Each test fails without its fix.

mod common;
use common::{awt, s};

/// Class 10: `eval --attack none` measures no robustness: no robust accuracy (it was the clean one),
/// and no gradient-masking warning from a noise check that had no attack to test.
#[test]
fn an_evaluation_without_attack_reports_no_robust_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let (init, json) = (tmp.path().join("i.safetensors"), tmp.path().join("e.json"));
    assert!(awt(&["init", "--arch", "mlp-784-32-10", "--out", s(&init)]).0);
    let (ok, out, err) = awt(&["eval", "--model", s(&init), "--attack", "none", "--limit", "200", "--json", s(&json)]);
    assert!(ok, "{err}");
    assert!(!out.contains("WARNING"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(v["robust_correct"].is_null() && v["robust_accuracy"].is_null(), "{v}");
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["gradient_masking_suspected"], false);
}

/// Class 11: a ticket whose mask empties a layer is refused by `train`, naming the layer (`prune`
/// never makes one, but a hand-made or foreign file can hold one).
#[test]
fn training_refuses_a_ticket_that_empties_a_layer() {
    use awt_nets::{Arch, Init, Net};
    use candle_core::{DType, Device};
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Net::init(&Arch::Mlp(vec![784, 32, 10]), Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    for k in net.weight_names() {
        let w = net.param(&k).unwrap().as_tensor().clone();
        let m = if k == "fc1.weight" { w.zeros_like() } else { w.ones_like() }.unwrap();
        net.set_mask(&k, &m).unwrap();
    }
    let ticket = tmp.path().join("t.safetensors");
    awt_nets::save(&net, &ticket).unwrap();
    let out = tmp.path().join("run");
    let (ok, _, err) =
        awt(&["train", "--ticket", s(&ticket), "--epochs", "1", "--train-limit", "64", "--quiet", "--out", s(&out)]);
    assert!(!ok && err.contains("the mask of `fc1.weight` keeps no weight"), "{err}");
    assert!(!out.exists(), "a refused run left a folder behind");
}
