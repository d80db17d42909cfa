//! Criterion benchmarks of the awt hot paths; `cargo xtask bench` runs them.
#![allow(missing_docs)]

use awt_nets::{Arch, Init, Net};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};

fn forward_backward(c: &mut Criterion) {
    let dev = Device::Cpu;
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let net = Net::init(&Arch::parse(arch).unwrap(), Init::KaimingUniform, 0, DType::F32, &dev).unwrap();
        let mut rng = awt_base::Rng::new(0);
        let x = Tensor::from_vec(rng.uniform_vec_f32(128 * 784, 0.0, 1.0), (128, 1, 28, 28), &dev).unwrap();
        c.bench_function(&format!("fwd_bwd/{arch}/b128"), |b| {
            b.iter(|| net.forward(&x).unwrap().sum_all().unwrap().backward().unwrap())
        });
    }
}

criterion_group!(benches, forward_backward);
criterion_main!(benches);
