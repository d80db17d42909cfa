//! `awt_train::train` against PyTorch: a masked 784-32-10 MLP trained in float64 for five full-batch
//! steps with Adam (L2 weight decay) and with SGD (Nesterov momentum, weight decay), from the same
//! formula weights, mask and data (`benches/peers/torch_train_fixture.py` made the fixture
//! `tests/data/pytorch-training.json`; it holds PyTorch's results only). Compared: each trained
//! tensor's sum, sum of squares and 64 of its entries, and the trained net's logits.

use awt_data::Split;
use awt_nets::testing::formula_net;
use awt_nets::{Arch, Net};
use awt_train::{NoHooks, Objective, OptimizerConfig, RunFolder, Schedule, TrainConfig, train};
use candle_core::{DType, Device, Module};

const FIXTURE: &str = include_str!("data/pytorch-training.json");

/// The formula net, its pruned weights zeroed as pruning leaves them.
fn masked_net() -> Net {
    let net = formula_net(&Arch::Mlp(vec![784, 32, 10]), true);
    net.apply_masks().unwrap();
    net
}

fn data(n: usize) -> Split {
    let (images, labels) = awt_base::testing::formula_images(n);
    Split { images, labels, shape: [1, 28, 28] }
}

fn rel(ours: f64, theirs: f64) -> f64 {
    (ours - theirs).abs() / theirs.abs().max(1e-300)
}

fn check(name: &str, optimizer: OptimizerConfig) {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let (n, steps) = (fixture["n"].as_u64().unwrap() as usize, fixture["steps"].as_u64().unwrap() as usize);
    let want = &fixture[name];
    let net = masked_net();
    let c = TrainConfig {
        epochs: steps,
        batch_size: n,
        lr: want["lr"].as_f64().unwrap(),
        optimizer,
        schedule: Schedule::Constant,
        objective: Objective::Natural,
        seed: 0,
        eval_n: n,
        eval_eps: 0.1,
        eval_steps: 1,
    };
    let split = data(n);
    let dir = tempfile::tempdir().unwrap();
    let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let hash = format!("{c:?}");
    let folder = RunFolder::open(dir.path(), &hash, &hash, false).unwrap();
    train(&net, vars, &split, &split, &c.validate().unwrap(), &folder, &mut NoHooks).unwrap();
    for (tensor, w) in want["tensors"].as_object().unwrap() {
        let ours = net.param(tensor).unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let sum: f64 = ours.iter().sum();
        let sumsq: f64 = ours.iter().map(|v| v * v).sum();
        let e = rel(sum, w["sum"].as_f64().unwrap()).max(rel(sumsq, w["sumsq"].as_f64().unwrap()));
        assert!(e <= 1e-10, "{name} {tensor}: sum or sum of squares off by {e:.3e} against PyTorch");
        for entry in w["entries"].as_array().unwrap() {
            let (k, v) = (entry[0].as_u64().unwrap() as usize, entry[1].as_f64().unwrap());
            assert!((ours[k] - v).abs() <= 1e-10 * v.abs().max(1e-3), "{name} {tensor}[{k}]: {} against {v}", ours[k]);
        }
    }
    let x = split.images_tensor(&(0..n).collect::<Vec<_>>(), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    let logits = net.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let theirs: Vec<f64> = want["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let scale = theirs.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let e = logits.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    assert!(e <= 1e-10, "{name}: trained logits off by {e:.3e} against PyTorch");
}

#[test]
fn masked_adam_training_equals_pytorch() {
    check("adam", OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: false });
}

#[test]
fn masked_sgd_nesterov_training_equals_pytorch() {
    check("sgd-nesterov", OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 5e-4 });
}
