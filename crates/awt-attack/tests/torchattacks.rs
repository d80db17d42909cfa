//! awt's attacks against an independent implementation: torchattacks 3.5 on PyTorch, in float64, on a
//! LeNet-300-100 whose weights and inputs are formulas both sides compute (the fixture,
//! `tests/data/torchattacks.json`, made by `benches/peers/torchattacks_fixture.py`, holds the labels
//! and torchattacks' results only). Everything without randomness is compared: the logits, the
//! cross-entropy input gradient, APGD's DLR loss and APGD-T's targeted one with their input
//! gradients, FGSM, and PGD without random start in ℓ∞ and ℓ2 (the last iterate, as torchattacks
//! returns it: `Pgd::last_iterate`, what adversarial training trains on).

use awt_attack::{Attack, Fgsm, LossKind, Norm, Pgd, input_gradient, per_example_loss};
use awt_base::Classifier;
use awt_base::testing::formula_values;
use awt_nets::{Arch, Init, Net};
use candle_core::{DType, Device, Tensor};

const FIXTURE: &str = include_str!("data/torchattacks.json");

fn net() -> Net {
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 0, DType::F64, &Device::Cpu).unwrap();
    for (l, layer) in ["fc1", "fc2", "fc3"].iter().enumerate() {
        let w = net.param(&format!("{layer}.weight")).unwrap();
        let b = net.param(&format!("{layer}.bias")).unwrap();
        let fan_in = w.dims()[1];
        let wv = formula_values(2 * l, w.elem_count(), fan_in, false);
        let bv = formula_values(2 * l + 1, b.elem_count(), fan_in, true);
        w.set(&Tensor::from_vec(wv, w.shape(), &Device::Cpu).unwrap()).unwrap();
        b.set(&Tensor::from_vec(bv, b.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    net
}

struct Fixture {
    j: serde_json::Value,
    x: Tensor,
    y: Tensor,
    t: Tensor,
}

fn fixture() -> Fixture {
    let j: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let n = j["n"].as_u64().unwrap() as usize;
    let x: Vec<f64> = (0..n)
        .flat_map(|i| (0..784).map(move |e| 0.5 + 0.5 * (0.11 * e as f64 + 2.1 * i as f64 + 0.7).sin()))
        .collect();
    let labels: Vec<u32> = j["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let targets: Vec<u32> = labels.iter().map(|l| (l + 1) % 10).collect();
    Fixture {
        x: Tensor::from_vec(x, (n, 1, 28, 28), &Device::Cpu).unwrap(),
        y: Tensor::new(labels.as_slice(), &Device::Cpu).unwrap(),
        t: Tensor::new(targets.as_slice(), &Device::Cpu).unwrap(),
        j,
    }
}

/// Largest |ours − theirs| over the largest |theirs| (theirs as stored, flattened).
fn rel_err(f: &Fixture, key: &str, ours: &Tensor) -> f64 {
    let theirs: Vec<f64> = f.j[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let ours = ours.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{key}: sizes differ");
    let diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    diff / theirs.iter().map(|b| b.abs()).fold(0.0, f64::max).max(1e-300)
}

fn check(f: &Fixture, key: &str, ours: &Tensor, tol: f64) {
    let e = rel_err(f, key, ours);
    assert!(e <= tol, "{key}: relative error {e:.3e} against torchattacks (tolerance {tol:e})");
}

#[test]
fn losses_and_their_input_gradients_equal_torchattacks() {
    let (f, net) = (fixture(), net());
    let z = net.logits(&f.x).unwrap();
    check(&f, "logits", &z, 1e-12);
    check(&f, "ce", &per_example_loss(&z, &f.y, None, LossKind::CrossEntropy).unwrap(), 1e-12);
    check(&f, "ce_grad", &input_gradient(&net, &f.x, &f.y, None, LossKind::CrossEntropy).unwrap(), 1e-10);
    check(&f, "dlr", &per_example_loss(&z, &f.y, None, LossKind::Dlr).unwrap(), 1e-12);
    check(&f, "dlr_grad", &input_gradient(&net, &f.x, &f.y, None, LossKind::Dlr).unwrap(), 1e-10);
    check(&f, "dlr_targeted", &per_example_loss(&z, &f.y, Some(&f.t), LossKind::Dlr).unwrap(), 1e-12);
    let g = input_gradient(&net, &f.x, &f.y, Some(&f.t), LossKind::Dlr).unwrap();
    check(&f, "dlr_targeted_grad", &g, 1e-10);
}

#[test]
fn fgsm_and_pgd_without_random_start_equal_torchattacks() {
    let (f, net) = (fixture(), net());
    let num = |k: &str| f.j[k].as_f64().unwrap();
    let (eps, alpha, steps) = (num("eps"), num("alpha"), num("steps") as usize);
    let ids: Vec<u64> = (0..f.x.dim(0).unwrap() as u64).collect();
    let pgd = |norm, eps, step_size, steps| Pgd {
        eps,
        step_size,
        steps,
        norm,
        random_start: false,
        restarts: 1,
        loss: LossKind::CrossEntropy,
        seed: 0,
    };
    // FGSM is one step of size ε from the clean point.
    let one = pgd(Norm::Linf, eps, eps, 1).last_iterate(&net, &f.x, &f.y, &ids).unwrap();
    check(&f, "fgsm", &one, 1e-12);
    // awt's `Fgsm` attack keeps, like every attack here, a point already misclassified as it is
    // (example 1, labelled away from its prediction), and torchattacks' step for the others.
    let out = Fgsm { eps, loss: LossKind::CrossEntropy }.perturb(&net, &f.x, &f.y, None, &ids).unwrap();
    assert_eq!(out.fooled, [false, true]);
    let kept =
        Tensor::cat(&[&one.get(0).unwrap().unsqueeze(0).unwrap(), &f.x.get(1).unwrap().unsqueeze(0).unwrap()], 0)
            .unwrap();
    assert_eq!(
        out.adv.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        kept.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    );
    let linf = pgd(Norm::Linf, eps, alpha, steps).last_iterate(&net, &f.x, &f.y, &ids).unwrap();
    check(&f, "pgd_linf", &linf, 1e-12);
    let l2 = pgd(Norm::L2, num("eps_l2"), num("alpha_l2"), steps).last_iterate(&net, &f.x, &f.y, &ids).unwrap();
    // torchattacks divides the gradient by its norm + 1e-10, awt by its norm + 1e-12: 7.5e-10 apart.
    check(&f, "pgd_l2", &l2, 5e-9);
}
