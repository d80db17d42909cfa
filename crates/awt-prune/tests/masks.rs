//! The mask checks of docs/checks.md, and the scores' definitions.
#![allow(clippy::disallowed_methods)] // the scores' definitions in candle's own ops

use std::collections::BTreeMap;

use awt_base::{Rng, Staged};
use awt_nets::{Arch, Init, Net};
use awt_prune::{Allocation, Target, kept_counts, layer_densities, scores, select, select_counts, select_keeping};
use candle_core::{DType, Device, Tensor, Var};

/// The density `x`.
fn d(x: f64) -> awt_runs::Density {
    awt_runs::Density::new(x).unwrap()
}

fn weights(net: &Net) -> BTreeMap<String, Tensor> {
    net.weight_names().into_iter().map(|k| (k.clone(), net.param(&k).unwrap().as_tensor().clone())).collect()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

/// Every mask is 0/1 with its weight's shape; each layer keeps round(d·n); kept ≥ pruned.
fn check_masks(scores: &BTreeMap<String, Tensor>, density: f64, alloc: Allocation) {
    let masks = select(scores, d(density), alloc).unwrap();
    assert_eq!(masks.keys().collect::<Vec<_>>(), scores.keys().collect::<Vec<_>>());
    let total: usize = scores.values().map(|s| s.elem_count()).sum();
    let mut kept_all = 0;
    let (mut min_kept, mut max_pruned) = (f64::INFINITY, f64::NEG_INFINITY);
    for (k, m) in &masks {
        assert_eq!(m.dims(), scores[k].dims());
        let (mv, sv) = (vals(m), vals(&scores[k]));
        assert!(mv.iter().all(|&x| x == 0.0 || x == 1.0));
        let kept = mv.iter().filter(|&&x| x == 1.0).count();
        assert!(kept > 0, "{k} emptied");
        kept_all += kept;
        if alloc == Allocation::Uniform {
            assert_eq!(kept, (density * mv.len() as f64).round() as usize, "{k}");
        }
        for (m, s) in mv.iter().zip(&sv) {
            if *m == 1.0 {
                min_kept = min_kept.min(*s);
            } else {
                max_pruned = max_pruned.max(*s);
            }
        }
        if alloc != Allocation::Global {
            let (lk, lp) = mv.iter().zip(&sv).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (m, s)| {
                if *m == 1.0 { (a.min(*s), b) } else { (a, b.max(*s)) }
            });
            assert!(lk >= lp, "{k}: a pruned score {lp} exceeds a kept one {lk}");
        }
    }
    if alloc == Allocation::Global {
        assert!(min_kept >= max_pruned);
        assert!((kept_all as f64 - density * total as f64).abs() <= 1.0);
    }
    if alloc == Allocation::Erk {
        assert!(
            (kept_all as f64 - density * total as f64).abs() <= masks.len() as f64,
            "{kept_all} vs {}",
            density * total as f64
        );
    }
}

#[test]
fn selection_is_exact_for_every_allocation() {
    let net = Net::init(&Arch::Lenet5Caffe, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    let s = scores::magnitude(&weights(&net)).unwrap();
    for alloc in [Allocation::Uniform, Allocation::Global, Allocation::Erk] {
        for d in [1.0, 0.5, 0.2, 0.05, 0.02] {
            check_masks(&s, d, alloc);
        }
    }
    let r = scores::random(&weights(&net), 3).unwrap();
    check_masks(&r, 0.1, Allocation::Uniform);
}

#[test]
fn ties_are_broken_by_lower_index_and_bad_densities_are_refused() {
    let s = BTreeMap::from([("a.weight".to_string(), Tensor::ones((2, 5), DType::F32, &Device::Cpu).unwrap())]);
    let m = select(&s, d(0.3), Allocation::Uniform).unwrap();
    assert_eq!(vals(&m["a.weight"]), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // A density out of (0, 1] cannot be made: `select` takes an `awt_runs::Density`.
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(awt_runs::Density::new(bad).unwrap_err().to_string().contains("density"), "{bad}");
    }
    // A density that keeps no weight of a layer is an error naming the layer.
    let e = select(&s, d(0.01), Allocation::Uniform).unwrap_err().to_string();
    assert!(e.contains("a.weight") && e.contains("empty"), "{e}");
    let nan = BTreeMap::from([("b.weight".to_string(), Tensor::new(&[1.0f32, f32::NAN], &Device::Cpu).unwrap())]);
    assert!(select(&nan, d(0.5), Allocation::Uniform).unwrap_err().to_string().contains("NaN"));
}

#[test]
fn erk_densities_favour_small_layers_and_meet_the_budget() {
    let shapes = BTreeMap::from([("big".to_string(), vec![300, 784]), ("small".to_string(), vec![10, 100])]);
    let d = layer_densities(&shapes, d(0.05), Allocation::Erk).unwrap();
    assert!(d["small"] > d["big"] && d["small"] <= 1.0);
    let kept = d["big"] * 235200.0 + d["small"] * 1000.0;
    assert!((kept - 0.05 * 236200.0).abs() < 1e-6);
}

#[test]
fn magnitude_snip_and_random_follow_their_definitions() {
    let net = Net::init(&Arch::Mlp(vec![6, 5, 3]), Init::KaimingUniform, 1, DType::F64, &Device::Cpu).unwrap();
    let w = weights(&net);
    let m = scores::magnitude(&w).unwrap();
    assert_eq!(vals(&m["fc1.weight"]), vals(&w["fc1.weight"].abs().unwrap()));
    assert_eq!(
        vals(&scores::random(&w, 1).unwrap()["fc1.weight"]),
        vals(&scores::random(&w, 1).unwrap()["fc1.weight"])
    );
    assert_ne!(
        vals(&scores::random(&w, 1).unwrap()["fc1.weight"]),
        vals(&scores::random(&w, 2).unwrap()["fc1.weight"])
    );
    // SNIP on L = Σ f(x): |w ⊙ ∂L/∂w|.
    let vars: BTreeMap<String, Var> =
        net.weight_names().into_iter().map(|k| (k.clone(), net.param(&k).unwrap().clone())).collect();
    let x = Tensor::from_vec((0..12).map(|i| i as f64 / 12.0).collect::<Vec<_>>(), (2, 6), &Device::Cpu).unwrap();
    let loss = || candle_core::Module::forward(&net, &x)?.sum_all();
    let s = scores::snip(&loss, &vars).unwrap();
    let g = loss().unwrap().backward().unwrap();
    let expect = w["fc2.weight"].mul(g.get(vars["fc2.weight"].as_tensor()).unwrap()).unwrap().abs().unwrap();
    assert_eq!(vals(&s["fc2.weight"]), vals(&expect));
}

#[test]
fn grasp_hessian_gradient_product_is_exact_on_a_quadratic() {
    // L(w) = ½ wᵀ A w + bᵀ w with a known symmetric A: ∇L = A w + b, H g = A (A w + b).
    let dev = Device::Cpu;
    let mut r = Rng::new(4);
    let n = 6;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = r.normal();
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    let at = Tensor::from_vec(a, (n, n), &dev).unwrap();
    let b = Tensor::from_vec((0..n).map(|_| r.normal()).collect::<Vec<f64>>(), (n, 1), &dev).unwrap();
    let w =
        Var::from_tensor(&Tensor::from_vec((0..n).map(|_| r.normal()).collect::<Vec<f64>>(), (n, 1), &dev).unwrap())
            .unwrap();
    let vars = BTreeMap::from([("w.weight".to_string(), w.clone())]);
    let loss = || -> candle_core::Result<Tensor> {
        let wt = w.as_tensor();
        (wt.t()?.matmul(&at)?.matmul(wt)? * 0.5)?.sum_all()? + wt.mul(&b)?.sum_all()?
    };
    let s = scores::grasp(&loss, &vars, 1e-3).unwrap();
    let g = (at.matmul(w.as_tensor()).unwrap() + &b).unwrap();
    let expect = w.as_tensor().mul(&at.matmul(&g).unwrap()).unwrap();
    let (sv, ev) = (vals(&s["w.weight"]), vals(&expect));
    for (x, y) in sv.iter().zip(&ev) {
        assert!((x - y).abs() < 1e-8 * (1.0 + y.abs()), "{x} vs {y}");
    }
    // The weights are restored afterwards.
    assert_eq!(vals(w.as_tensor()).len(), n);
}

#[test]
fn synflow_reaches_the_density_without_emptying_layers_and_is_deterministic() {
    let net = Net::init(&Arch::Lenet5Caffe, Init::KaimingUniform, 2, DType::F32, &Device::Cpu).unwrap();
    let t = Target::Density { density: d(0.05), alloc: Allocation::Uniform, dense: &[] };
    let a = awt_prune::scores::synflow(&net.stages(), &[1, 28, 28], t, 20).unwrap();
    let b = awt_prune::scores::synflow(&net.stages(), &[1, 28, 28], t, 20).unwrap();
    for (k, m) in &a {
        assert_eq!(vals(m), vals(&b[k]));
    }
    for (name, m) in &a {
        let kept = vals(m).iter().sum::<f64>() as usize;
        assert_eq!(kept, (0.05 * m.elem_count() as f64).round() as usize, "{name}");
    }
}

/// The output layer kept dense: all its weights kept and counted in the density, the hidden layers
/// sharing the rest (exactly under global ranking, to a weight per layer per layer-wise); no `dense`
/// is `select` itself; a density that cannot pay for the kept layer, or an unknown layer, is refused.
#[test]
fn output_layer_kept_dense_counts_in_the_density() {
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 4, DType::F32, &Device::Cpu).unwrap();
    let sc = scores::random(&weights(&net), 9).unwrap();
    let out = Arch::Lenet300100.output_weight();
    assert_eq!(out, "fc3.weight");
    let kept = |m: &BTreeMap<String, Tensor>, k: &str| vals(&m[k]).iter().filter(|&&x| x == 1.0).count();
    for alloc in [Allocation::Uniform, Allocation::Global] {
        let m = select_keeping(&sc, d(0.02), alloc, std::slice::from_ref(&out)).unwrap();
        assert_eq!(kept(&m, "fc3.weight"), 1000);
        let all: usize = m.keys().map(|k| kept(&m, k)).sum();
        assert!(all.abs_diff(5324) <= 2, "{alloc:?}: {all} kept of 5,324");
        if alloc == Allocation::Global {
            assert_eq!(all, 5324);
        } else {
            // Both hidden layers at the same density, 4,324 / 265,200.
            let d = 4324.0 / 265_200.0;
            assert_eq!(kept(&m, "fc1.weight"), (d * 235_200.0_f64).round() as usize);
            assert_eq!(kept(&m, "fc2.weight"), (d * 30_000.0_f64).round() as usize);
        }
    }
    let plain = select(&sc, d(0.05), Allocation::Uniform).unwrap();
    let same = select_keeping(&sc, d(0.05), Allocation::Uniform, &[]).unwrap();
    for k in plain.keys() {
        assert_eq!(vals(&plain[k]), vals(&same[k]));
    }
    let e = select_keeping(&sc, d(0.003), Allocation::Uniform, std::slice::from_ref(&out)).unwrap_err().to_string();
    assert!(e.contains("no more than the 1000 of the layers kept dense (fc3.weight)"), "{e}");
    let e = select_keeping(&sc, d(0.05), Allocation::Uniform, &["fc9.weight".into()]).unwrap_err().to_string();
    assert!(e.contains("`fc9.weight` to keep dense is not among the pruned weights"), "{e}");
}

/// A given allocation: another mask's per-layer counts (a global mask's) are kept exactly, each
/// layer's by its own top scores; uniform counts give `select`'s uniform masks; counts that cannot
/// be kept name the layer.
#[test]
fn counts_from_another_mask_are_kept_exactly_by_each_layers_top_scores() {
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 4, DType::F32, &Device::Cpu).unwrap();
    let w = weights(&net);
    let global = select(&scores::random(&w, 9).unwrap(), d(0.05), Allocation::Global).unwrap();
    let counts = kept_counts(&global).unwrap();
    let by_hand: BTreeMap<String, usize> =
        global.iter().map(|(k, m)| (k.clone(), vals(m).iter().filter(|&&x| x != 0.0).count())).collect();
    assert_eq!(counts, by_hand);
    let mag = scores::magnitude(&w).unwrap();
    let masks = select_counts(&mag, &counts).unwrap();
    assert_eq!(kept_counts(&masks).unwrap(), counts);
    assert_ne!(counts["fc1.weight"] as f64 / 235_200.0, counts["fc3.weight"] as f64 / 1_000.0, "not uniform");
    for (k, m) in &masks {
        let (mv, sv) = (vals(m), vals(&mag[k]));
        let lowest_kept = mv.iter().zip(&sv).filter(|(m, _)| **m == 1.0).map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
        let highest_pruned =
            mv.iter().zip(&sv).filter(|(m, _)| **m == 0.0).map(|(_, s)| *s).fold(f64::NEG_INFINITY, f64::max);
        assert!(lowest_kept >= highest_pruned, "{k}");
    }
    let uniform = select(&mag, d(0.1), Allocation::Uniform).unwrap();
    let again = select_counts(&mag, &kept_counts(&uniform).unwrap()).unwrap();
    for (k, m) in &uniform {
        assert_eq!(vals(m), vals(&again[k]), "{k}");
    }
    let with = |k: &str, n: usize| {
        let mut c = counts.clone();
        c.insert(k.to_string(), n);
        c
    };
    let e = select_counts(&mag, &with("fc2.weight", 0)).unwrap_err().to_string();
    assert!(e.contains("fc2.weight") && e.contains("cannot keep 0"), "{e}");
    let e = select_counts(&mag, &with("fc3.weight", 1001)).unwrap_err().to_string();
    assert!(e.contains("fc3.weight") && e.contains("1000 weights"), "{e}");
    let e = select_counts(&mag, &with("conv9.weight", 3)).unwrap_err().to_string();
    assert!(e.contains("conv9.weight"), "{e}");
    let mut short = counts.clone();
    short.remove("fc1.weight");
    let e = select_counts(&mag, &short).unwrap_err().to_string();
    assert!(e.contains("no count") && e.contains("fc1.weight"), "{e}");
}
