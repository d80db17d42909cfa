//! `Target`: a pruner ends at an overall density under an allocation rule, exactly as
//! `select_keeping` selects, or at given counts per layer, which an iterative score approaches on
//! the exponential schedule layer by layer.

use std::collections::BTreeMap;

use awt_base::Staged;
use awt_nets::{Arch, Init, Net};
use awt_prune::{Allocation, Target, check_counts, kept_counts, scores, select_keeping};
use candle_core::{DType, Device, Tensor};

fn d(x: f64) -> awt_runs::Density {
    awt_runs::Density::new(x).unwrap()
}

fn weights(net: &Net) -> BTreeMap<String, Tensor> {
    net.weights().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()
}

fn same(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, m)| b.get(k).is_some_and(|n| vals(m) == vals(n)))
}

/// A density target selects as `select_keeping` does, every allocation, the output layer kept or not.
#[test]
fn a_density_target_selects_as_select_keeping() {
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 5, DType::F32, &Device::Cpu).unwrap();
    let s = scores::random(&weights(&net), 11).unwrap();
    let out = ["fc3.weight".to_string()];
    for alloc in [Allocation::Uniform, Allocation::Global, Allocation::Erk] {
        for dense in [&[][..], &out[..]] {
            let t = Target::Density { density: d(0.05), alloc, dense };
            assert!(same(&t.select(&s).unwrap(), &select_keeping(&s, d(0.05), alloc, dense).unwrap()), "{alloc:?}");
        }
    }
}

/// Counts are met exactly at the last round; before it each layer keeps `n · (c/n)^(r/R)` of its
/// `n` weights, rounded: never fewer than its count, fewer each round.
#[test]
fn counts_are_approached_layer_by_layer_and_met_at_the_last_round() {
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 5, DType::F32, &Device::Cpu).unwrap();
    let w = weights(&net);
    let erk = select_keeping(&scores::random(&w, 3).unwrap(), d(0.05), Allocation::Erk, &[]).unwrap();
    let counts = kept_counts(&erk).unwrap();
    let mag = scores::magnitude(&w).unwrap();
    let rounds = 4;
    let mut before: BTreeMap<String, usize> = w.iter().map(|(k, t)| (k.clone(), t.elem_count())).collect();
    for r in 1..=rounds {
        let kept = kept_counts(&Target::Counts(&counts).select_round(&mag, r, rounds).unwrap()).unwrap();
        for (k, &c) in &counts {
            let n = w[k].elem_count();
            let want = (n as f64 * (c as f64 / n as f64).powf(r as f64 / rounds as f64)).round() as usize;
            assert_eq!(kept[k], if r == rounds { c } else { want }, "{k}, round {r}");
            assert!(kept[k] >= c && kept[k] < before[k], "{k}, round {r}: {} after {}", kept[k], before[k]);
        }
        before = kept;
    }
    assert_eq!(kept_counts(&Target::Counts(&counts).select(&mag).unwrap()).unwrap(), counts, "one shot");
}

/// SynFlow held to another mask's counts ends with exactly those counts — not the ones its own
/// global ranking gives — and is a choice of its own within each layer.
#[test]
fn synflow_at_given_counts_keeps_them_by_its_own_scores() {
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 6, DType::F32, &Device::Cpu).unwrap();
    let w = weights(&net);
    let uniform = select_keeping(&scores::random(&w, 8).unwrap(), d(0.05), Allocation::Uniform, &[]).unwrap();
    let counts = kept_counts(&uniform).unwrap();
    let global = Target::Density { density: d(0.05), alloc: Allocation::Global, dense: &[] };
    let own = scores::synflow(&net.stages(), &[1, 28, 28], global, 10).unwrap();
    assert_ne!(kept_counts(&own).unwrap(), counts, "SynFlow's own allocation is another");
    let held = scores::synflow(&net.stages(), &[1, 28, 28], Target::Counts(&counts), 10).unwrap();
    assert_eq!(kept_counts(&held).unwrap(), counts);
    assert!(!same(&held, &uniform), "its own choice within layers, not the mask the counts came from");
    // Within a layer it keeps what its global masks keep more often than the random mask does.
    let overlap = |a: &Tensor, b: &Tensor| vals(a).iter().zip(vals(b)).filter(|(x, y)| **x == 1.0 && *y == 1.0).count();
    let k = "fc1.weight";
    assert!(overlap(&held[k], &own[k]) > 2 * overlap(&uniform[k], &own[k]), "{k}");
}

/// Counts that do not add up to the density, or that prune a layer kept dense, are refused by name.
#[test]
fn counts_that_do_not_fit_are_refused_by_name() {
    let sizes: BTreeMap<String, usize> = [("a".to_string(), 100), ("b".to_string(), 10)].into();
    let counts: BTreeMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 10)].into();
    check_counts(&sizes, &counts, d(0.1), &["b".to_string()]).unwrap();
    let e = check_counts(&sizes, &counts, d(0.2), &[]).unwrap_err().to_string();
    assert!(e.contains("keep 11 weights, not the 22 of density 0.2"), "{e}");
    let pruned: BTreeMap<String, usize> = [("a".to_string(), 2), ("b".to_string(), 9)].into();
    let e = check_counts(&sizes, &pruned, d(0.1), &["b".to_string()]).unwrap_err().to_string();
    assert!(e.contains("`b` whole"), "{e}");
}
