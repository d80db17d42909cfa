//! awt's pruning scores at initialisation against the definitions of Synaptic-Flow
//! (ganguli-lab/Synaptic-Flow, `Pruners/pruners.py`, `prune.py`) and of GraSP's authors, computed
//! in PyTorch float64 with autograd doing every derivative (GraSP's Hessian-gradient product by
//! double backward, where awt takes a central finite difference of gradients):
//! `benches/peers/pruners_fixture.py` made `tests/data/pruners.json`, which holds PyTorch's results
//! only. The nets (LeNet-300-100 and LeNet-5-Caffe) and the batch are formulas both sides compute.
//! Compared: SNIP's and GraSP's normalised scores per layer (sum, sum of squares, 64 entries) and
//! their global masks at density 0.05; SynFlow's global masks at density 0.05 after 1 and after 100
//! rounds; NTK-SAP's first-round scores (YiteWang/NTK-SAP's `NTKSAP` definition, with formula
//! draws instead of random ones) and its masks after 1 and after 5 rounds. A mask is compared by each layer's kept count and the sum and sum of squares of its kept
//! flat indices, so one weight kept in another place fails it.

use std::collections::BTreeMap;

use awt_base::testing::formula_values;
use awt_base::{Staged, Weighted};
use awt_nets::testing::formula_net;
use awt_nets::{Arch, InputNorm, Net};
use awt_prune::scores::{self, GRASP_TEMPERATURE, SapDraw, Scores};
use awt_prune::{Allocation, Masks, PruneError, Target, select};
use awt_runs::Density;
use candle_core::{DType, Device, Module, Tensor, Var};
use serde_json::Value;

const FIXTURE: &str = include_str!("data/pruners.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// The fixture's batch: `n` formula images (byte / 255 in f32, then f64) and their labels.
fn batch(n: usize) -> (Tensor, Tensor) {
    let (images, labels) = awt_base::testing::formula_images(n);
    let x: Vec<f64> = images.iter().map(|&b| f64::from(b as f32 / 255.0)).collect();
    let y: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    (Tensor::from_vec(x, (n, 1, 28, 28), &Device::Cpu).unwrap(), Tensor::from_vec(y, n, &Device::Cpu).unwrap())
}

/// The mean cross-entropy of the logits divided by `temperature`, as `awt prune` scores it.
fn ce(net: &Net, x: &Tensor, y: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let logits = (net.forward(x)? / temperature)?;
    awt_attack::per_example_loss(&logits, y, None, awt_attack::LossKind::CrossEntropy)?.mean_all()
}

fn vars(net: &Net) -> BTreeMap<String, Var> {
    net.weights().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

fn layer(name: &str) -> String {
    format!("{name}.weight")
}

/// Each layer's scores divided by `norm` of all of them, against the fixture's; the largest
/// relative error of a sum, a sum of squares or an entry (entries relative to the layer's largest
/// stored entry).
fn score_error(ours: &Scores, theirs: &Value, norm: impl Fn(f64) -> f64) -> f64 {
    let total: f64 = ours.values().map(|s| flat(s).iter().sum::<f64>()).sum();
    let scale = norm(total);
    let mut worst: f64 = 0.0;
    for (name, want) in theirs.as_object().unwrap() {
        let v: Vec<f64> = flat(&ours[&layer(name)]).iter().map(|s| s / scale).collect();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-300);
        worst = worst.max(rel(v.iter().sum(), want["sum"].as_f64().unwrap()));
        worst = worst.max(rel(v.iter().map(|s| s * s).sum(), want["sumsq"].as_f64().unwrap()));
        let entries = want["entries"].as_array().unwrap();
        let big = entries.iter().map(|e| e[1].as_f64().unwrap().abs()).fold(0.0, f64::max);
        for e in entries {
            let (k, w) = (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap());
            worst = worst.max((v[k] - w).abs() / big);
        }
    }
    worst
}

/// The masks' kept counts and index sums against the fixture's, layer by layer.
fn same_masks(what: &str, ours: &BTreeMap<String, Tensor>, theirs: &Value) {
    for (name, want) in theirs.as_object().unwrap() {
        let kept: Vec<f64> =
            flat(&ours[&layer(name)]).iter().enumerate().filter(|(_, m)| **m == 1.0).map(|(i, _)| i as f64).collect();
        let got = (kept.len() as u64, kept.iter().sum::<f64>(), kept.iter().map(|i| i * i).sum::<f64>());
        let want = (
            want["kept"].as_u64().unwrap(),
            want["index_sum"].as_f64().unwrap(),
            want["index_sumsq"].as_f64().unwrap(),
        );
        assert_eq!(got, want, "{what} {name}: (kept, sum of kept indices, sum of their squares)");
    }
}

/// A global mask against the fixture's; where the fixture's mask empties a layer (Synaptic-Flow
/// lets a global ranking cut a layer off, and with it every path through the net: SNIP on LeNet-5's
/// convolutions, one-shot SynFlow's layer collapse), awt refuses, naming the first such layer.
fn same_masks_or_refused(what: &str, ours: Result<Masks, PruneError>, theirs: &Value) {
    let emptied: Vec<&String> =
        theirs.as_object().unwrap().iter().filter(|(_, m)| m["kept"] == 0).map(|(k, _)| k).collect();
    match ours {
        Ok(masks) => {
            assert!(emptied.is_empty(), "{what}: awt kept weights in {emptied:?}, which the peer's mask empties");
            same_masks(what, &masks, theirs)
        }
        Err(e) => {
            let first = emptied.first().unwrap_or_else(|| panic!("{what}: refused ({e}), but no layer is emptied"));
            assert!(e.to_string().contains(&format!("would empty `{}`", layer(first))), "{what}: {e}");
        }
    }
}

/// `standardising`: also SynFlow on the net with an input standardisation (LeNet-300-100 only:
/// 100 rounds of LeNet-5 take most of this test's time).
fn check(key: &str, arch: Arch, standardising: bool) {
    let f = fixture();
    let (n, d) = (f["n"].as_u64().unwrap() as usize, Density::new(f["density"].as_f64().unwrap()).unwrap());
    assert_eq!(f["temperature"].as_f64().unwrap(), GRASP_TEMPERATURE);
    let want = &f[key];
    let (x, y) = batch(n);
    let net = formula_net(&arch, false);

    // SNIP: normalised by the sum of every score (all positive).
    let snip = scores::snip(&|| ce(&net, &x, &y, 1.0), &vars(&net)).unwrap();
    let e = score_error(&snip, &want["snip"]["scores"], |t| t);
    assert!(e <= 1e-10, "{key} SNIP scores off by {e:.3e} against PyTorch");
    same_masks_or_refused("SNIP", select(&snip, d, Allocation::Global), &want["snip"]["mask"]);

    // GraSP at its temperature: awt's finite-difference H g against PyTorch's double backward.
    let grasp = scores::grasp(&|| ce(&net, &x, &y, GRASP_TEMPERATURE), &vars(&net), 1e-5).unwrap();
    let e = score_error(&grasp, &want["grasp"]["scores"], |t| t.abs() + 1e-10);
    assert!(e <= 1e-6, "{key} GraSP scores off by {e:.3e} against PyTorch's exact Hessian-gradient product");
    same_masks_or_refused("GraSP", select(&grasp, d, Allocation::Global), &want["grasp"]["mask"]);
    // Without the temperature the ranking is another one (GraSP as awt scored it before).
    let untempered = scores::grasp(&|| ce(&net, &x, &y, 1.0), &vars(&net), 1e-5).unwrap();
    let e = score_error(&untempered, &want["grasp"]["scores"], |t| t.abs() + 1e-10);
    assert!(e > 1e-2, "{key}: GraSP without its temperature is {e:.3e} from GraSP");

    // SynFlow: data-free, global, 1 round (which collapses a layer on both nets: awt refuses) and
    // 100. With an input standardisation in the net the all-ones input still enters the first
    // layer, so the masks are the same.
    let mut standardised = formula_net(&arch, false);
    standardised.set_input_norm(Some(InputNorm { mean: vec![0.2855], std: vec![0.3528] })).unwrap();
    let nets: &[(&str, &Net)] = if standardising {
        &[("SynFlow", &net), ("SynFlow (standardising net)", &standardised)]
    } else {
        &[("SynFlow", &net)]
    };
    for rounds in ["1", "100"] {
        let r: usize = rounds.parse().unwrap();
        for &(what, net) in nets {
            let t = Target::Density { density: d, alloc: Allocation::Global, dense: &[] };
            let masks = scores::synflow(&net.stages(), &[1, 28, 28], t, r);
            same_masks_or_refused(&format!("{what}, {rounds} rounds"), masks, &want["synflow"][rounds]);
        }
    }
}

#[test]
fn lenet_300_100_scores_and_masks_equal_synaptic_flows_definitions() {
    check("lenet-300-100", Arch::Lenet300100, true);
}

#[test]
fn lenet5_scores_and_masks_equal_synaptic_flows_definitions() {
    check("lenet5-caffe", Arch::Lenet5Caffe, false);
}

/// The fixture's NTK-SAP draw `t`: the formula net with parameter j at j + 20 (t + 1), the
/// direction of weight l at 200 + 10 t + l (fan-in 3: amplitude 1), `n` inputs at 500 + t.
fn sap_draw(arch: &Arch, t: usize, n: usize) -> candle_core::Result<SapDraw> {
    let dev = Device::Cpu;
    let (mut stages, mut directions, mut l) = (Vec::new(), BTreeMap::new(), 0);
    for s in formula_net(arch, false).stages() {
        stages.push(s.map_params(|p| {
            let (wlen, fan_in) = (p.weight.elem_count(), p.weight.dims()[1..].iter().product());
            let at = |j: usize, len: usize, fan_in: usize, bias: bool, like: &Tensor| {
                Tensor::from_vec(formula_values(j, len, fan_in, bias), like.shape(), &dev)
            };
            let weight = at(2 * l + 20 * (t + 1), wlen, fan_in, false, &p.weight)?;
            let bias = at(2 * l + 1 + 20 * (t + 1), p.bias.elem_count(), fan_in, true, &p.bias)?;
            directions.insert(format!("{}.weight", p.name), at(200 + 10 * t + l, wlen, 3, false, &p.weight)?);
            l += 1;
            Ok(Weighted { weight, bias, ..p })
        })?);
    }
    let inputs = Tensor::from_vec(formula_values(500 + t, n * 784, 3, false), (n, 1, 28, 28), &dev)?;
    Ok(SapDraw { stages, directions, inputs })
}

fn check_ntk_sap(key: &str, arch: Arch) {
    let f = fixture();
    let cfg = &f["ntk_sap"];
    let int = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (eps, draws, rounds, n) = (cfg["eps"].as_f64().unwrap(), int("draws"), int("rounds"), int("inputs"));
    assert_eq!(eps, scores::NTK_SAP_EPSILON);
    let d = Density::new(f["density"].as_f64().unwrap()).unwrap();
    let want = &f[key]["ntk_sap"];
    let net = formula_net(&arch, false);
    let weights: BTreeMap<String, Tensor> = net.weights().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let ones: Masks = weights.iter().map(|(k, w)| (k.clone(), w.ones_like().unwrap())).collect();

    // The first round's scores, normalised by their sum (all ≥ 0).
    let first = scores::ntk_sap_scores(&mut |j| sap_draw(&arch, j, n), draws, &ones, eps).unwrap();
    let e = score_error(&first, &want["scores"], |t| t);
    assert!(e <= 1e-9, "{key} NTK-SAP scores off by {e:.3e} against PyTorch");
    // Summing the draws' gradients before the absolute value matters: the sum of absolute values
    // is another score.
    let abs_sum: Scores = (0..draws)
        .map(|j| scores::ntk_sap_scores(&mut |_| sap_draw(&arch, j, n), 1, &ones, eps).unwrap())
        .reduce(|a, b| a.into_iter().map(|(k, t)| (k.clone(), (t + &b[&k]).unwrap())).collect())
        .unwrap();
    let e = score_error(&abs_sum, &want["scores"], |t| t);
    assert!(e > 1e-3, "{key}: NTK-SAP's sum of absolute gradients is {e:.3e} from its score");

    // One round (global, to density d at once) and several (the fixture's scope).
    let run = |rounds: usize, alloc: Allocation| {
        let t = Target::Density { density: d, alloc, dense: &[] };
        scores::ntk_sap(&weights, &mut |r, j| sap_draw(&arch, r * draws + j, n), t, rounds, draws, eps)
    };
    same_masks_or_refused("NTK-SAP, 1 round", run(1, Allocation::Global), &want["1"]);
    let several = &want[rounds.to_string()];
    let alloc = match several["scope"].as_str().unwrap() {
        "global" => Allocation::Global,
        "layer" => Allocation::Uniform,
        s => panic!("scope {s}"),
    };
    same_masks_or_refused(&format!("NTK-SAP, {rounds} rounds"), run(rounds, alloc), &several["mask"]);
}

#[test]
fn ntk_sap_scores_and_masks_equal_its_reference_definition() {
    check_ntk_sap("lenet-300-100", Arch::Lenet300100);
    check_ntk_sap("lenet5-caffe", Arch::Lenet5Caffe);
}
