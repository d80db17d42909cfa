//! Criterion benchmarks of the awt hot paths; `cargo xtask bench` runs them.
//! Peers measured side by side are recorded in docs/performance.md.
#![allow(missing_docs)]

use awt_attack::{Attack, LossKind, Norm, Pgd};
use awt_nets::{Arch, Init, Net};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};

fn inputs(n: usize) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let mut rng = awt_base::Rng::new(0);
    let x = Tensor::from_vec(rng.uniform_vec_f32(n * 784, 0.0, 1.0), (n, 1, 28, 28), &dev).unwrap();
    let y = Tensor::from_vec((0..n as u32).map(|i| i % 10).collect::<Vec<_>>(), n, &dev).unwrap();
    (x, y)
}

fn net(arch: &str) -> Net {
    Net::init(&Arch::parse(arch).unwrap(), Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap()
}

fn forward_backward(c: &mut Criterion) {
    let (x, y) = inputs(128);
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let net = net(arch);
        c.bench_function(&format!("fwd_bwd/{arch}/b128"), |b| {
            b.iter(|| candle_nn_free_ce(&net.forward(&x).unwrap(), &y).backward().unwrap())
        });
    }
}

/// Mean cross-entropy, via the attack crate's per-example loss (no candle-nn needed here).
fn candle_nn_free_ce(logits: &Tensor, y: &Tensor) -> Tensor {
    awt_attack::per_example_loss(logits, y, None, LossKind::CrossEntropy).unwrap().mean_all().unwrap()
}

/// PGD at batch 128 without random start: `pgd1` is a whole one-step attack call (input checks,
/// forward + input gradient, step, projection, a final forward for best-iterate tracking); one
/// steady-state PGD step is (pgd10 − pgd1) / 9.
fn pgd_step(c: &mut Criterion) {
    let (x, y) = inputs(128);
    let ids: Vec<u64> = (0..128).collect();
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let net = net(arch);
        let pgd1 = Pgd {
            eps: 0.1,
            step_size: 0.01,
            steps: 1,
            norm: Norm::Linf,
            random_start: false,
            restarts: 1,
            loss: LossKind::CrossEntropy,
            seed: 0,
        };
        let pgd10 = Pgd { steps: 10, ..pgd1.clone() };
        c.bench_function(&format!("pgd1/{arch}/b128"), |b| b.iter(|| pgd1.perturb(&net, &x, &y, None, &ids).unwrap()));
        c.bench_function(&format!("pgd10/{arch}/b128"), |b| {
            b.iter(|| pgd10.perturb(&net, &x, &y, None, &ids).unwrap())
        });
        c.bench_function(&format!("forward/{arch}/b128"), |b| b.iter(|| net.forward(&x).unwrap()));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = forward_backward, pgd_step
}
criterion_main!(benches);
