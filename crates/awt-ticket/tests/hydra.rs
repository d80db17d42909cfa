//! HYDRA's score optimisation against a PyTorch implementation of HYDRA's code
//! (inspire-group/hydra: `GetSubnet` on `|scores|` with a straight-through gradient,
//! `initialize_scaled_score`, SGD with momentum 0.9 and weight decay 1e-4 on the scores, its
//! per-epoch `cosine_schedule`):
//! `benches/peers/hydra_fixture.py` made `tests/data/hydra.json` in float64 (PyTorch's results
//! only). Same pretrained formula weights, the same full batch, the natural loss, 20 epochs of one
//! step each under HYDRA's cosine schedule, per-layer density 0.25, on LeNet-300-100 and LeNet-5-Caffe. Compared:
//! each layer's final scores (sum, sum of squares, 64 entries) and final mask (kept count and the
//! sum and sum of squares of its kept flat indices).

use awt_data::Split;
use awt_nets::Arch;
use awt_nets::testing::formula_net;
use awt_runs::Density;
use awt_train::{Objective, RunFolder, Schedule, TrainConfig};
use serde_json::Value;

const FIXTURE: &str = include_str!("data/hydra.json");

fn flat(t: &candle_core::Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

fn check(key: &str, arch: Arch) {
    let f: Value = serde_json::from_str(FIXTURE).unwrap();
    let n = f["n"].as_u64().unwrap() as usize;
    let (images, labels) = awt_base::testing::formula_images(n);
    let split = Split { images, labels, shape: [1, 28, 28] };
    let net = formula_net(&arch, false);
    let scores = awt_ticket::scaled_scores(&net).unwrap();
    let before: Vec<(String, Vec<f64>)> = scores.iter().map(|(k, v)| (k.clone(), flat(v.as_tensor()))).collect();
    let epochs = f["steps"].as_u64().unwrap() as usize;
    assert_eq!(f["schedule"], "hydra-cosine, one step per epoch");
    let cfg = TrainConfig {
        epochs,
        batch_size: n,
        lr: f["lr"].as_f64().unwrap(),
        optimizer: awt_ticket::HYDRA_OPTIMIZER,
        schedule: Schedule::HydraCosine { epochs },
        objective: Objective::Natural,
        seed: 0,
        eval_n: 0,
        eval_eps: 0.1,
        eval_steps: 0,
    };
    assert_eq!(f["weight_decay"].as_f64().unwrap(), awt_ticket::HYDRA_WEIGHT_DECAY);
    let dir = tempfile::tempdir().unwrap();
    let hash = format!("{cfg:?}");
    let run = RunFolder::open(dir.path(), &hash, &hash, false).unwrap();
    let density = Density::new(f["k"].as_f64().unwrap()).unwrap();
    let masks =
        awt_ticket::optimise_scores(&net, &scores, density, &[], &split, &split, &cfg.validate().unwrap(), &run)
            .unwrap();
    let mut crossed = 0;
    for (name, want) in f[key].as_object().unwrap() {
        let k = format!("{name}.weight");
        let ours = flat(scores[&k].as_tensor());
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-300);
        let w = &want["scores"];
        let e = rel(ours.iter().sum(), w["sum"].as_f64().unwrap())
            .max(rel(ours.iter().map(|s| s * s).sum(), w["sumsq"].as_f64().unwrap()));
        assert!(e <= 1e-9, "{key} {name}: scores' sum or sum of squares off by {e:.3e} against PyTorch");
        let entries = w["entries"].as_array().unwrap();
        let big = entries.iter().map(|e| e[1].as_f64().unwrap().abs()).fold(0.0, f64::max);
        for entry in entries {
            let (i, v) = (entry[0].as_u64().unwrap() as usize, entry[1].as_f64().unwrap());
            assert!((ours[i] - v).abs() <= 1e-9 * big, "{key} {name}[{i}]: {} against {v}", ours[i]);
        }
        let kept: Vec<f64> =
            flat(&masks[&k]).iter().enumerate().filter(|(_, m)| **m == 1.0).map(|(i, _)| i as f64).collect();
        let got = (kept.len() as u64, kept.iter().sum::<f64>(), kept.iter().map(|i| i * i).sum::<f64>());
        let m = &want["mask"];
        let expect =
            (m["kept"].as_u64().unwrap(), m["index_sum"].as_f64().unwrap(), m["index_sumsq"].as_f64().unwrap());
        assert_eq!(got, expect, "{key} {name}: the final mask (kept, sum of kept indices, sum of their squares)");
        let start = &before.iter().find(|(b, _)| *b == k).unwrap().1;
        let ours_crossed = start.iter().zip(&ours).filter(|(a, b)| a.signum() != b.signum()).count();
        assert_eq!(ours_crossed as u64, want["crossed"].as_u64().unwrap(), "{key} {name}: scores that changed sign");
        crossed += ours_crossed;
    }
    assert!(crossed > 0, "{key}: no score crossed zero, so ranking |s| against s was not tested");
}

#[test]
fn lenet_300_100_scores_and_masks_equal_hydras_code() {
    check("lenet-300-100", Arch::Lenet300100);
}

#[test]
fn lenet5_scores_and_masks_equal_hydras_code() {
    check("lenet5-caffe", Arch::Lenet5Caffe);
}

/// One epoch of HYDRA's schedule has learning rate 0 (as in HYDRA's code), so the scores could not
/// move and "HYDRA" would be magnitude pruning of the pretrained net: refused, with the reason.
#[test]
fn a_single_epoch_of_score_optimisation_is_refused() {
    let (images, labels) = awt_base::testing::formula_images(8);
    let split = Split { images, labels, shape: [1, 28, 28] };
    let net = formula_net(&Arch::Lenet300100, false);
    assert_eq!(Schedule::HydraCosine { epochs: 1 }.lr(0.1, 0, 0, 1), 0.0);
    let cfg = awt_ticket::HydraConfig {
        density: Density::new(0.05).unwrap(),
        epochs: 1,
        lr: 0.1,
        eps: 0.1,
        steps: 1,
        step_size: 0.025,
        batch: 8,
        seed: 0,
        keep_dense: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = awt_ticket::hydra(&net, &split, &split, &cfg, dir.path()) else { panic!("one epoch accepted") };
    assert!(err.to_string().contains("at least 2 epochs (got 1)"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "wrote into the work folder");
}
