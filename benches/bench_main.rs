//! Criterion benchmarks of the awt hot paths; `cargo xtask bench` runs them.
//! Peers measured side by side are recorded in docs/performance.md.
#![allow(missing_docs)]

// Same allocator as the `awt` binary: candle allocates a fresh buffer per op, and glibc's malloc
// returns large ones to the OS, so every op paid page faults again (an add of a 640×640 kernel
// took 1.35 ms with glibc and 36 µs with mimalloc).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use awt_attack::{Apgd, Attack, LossKind, Norm, Pgd};
use awt_nets::{Arch, Init, Net};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{Criterion, criterion_group};

fn inputs(n: usize) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let mut rng = awt_base::Rng::new(0);
    let x = Tensor::from_vec(rng.uniform_vec_f32(n * 784, 0.0, 1.0), (n, 1, 28, 28), &dev).unwrap();
    let y = Tensor::from_vec((0..n as u32).map(|i| i % 10).collect::<Vec<_>>(), n, &dev).unwrap();
    (x, y)
}

fn net(arch: &str) -> Net {
    Net::init(&arch.parse::<Arch>().unwrap(), Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap()
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
        let pgd1 = Pgd { random_start: false, ..Pgd::linf(0.1, 1, 0.01, 0) };
        let pgd10 = Pgd { steps: 10, ..pgd1.clone() };
        c.bench_function(&format!("pgd1/{arch}/b128"), |b| b.iter(|| pgd1.perturb(&net, &x, &y, None, &ids).unwrap()));
        c.bench_function(&format!("pgd10/{arch}/b128"), |b| {
            b.iter(|| pgd10.perturb(&net, &x, &y, None, &ids).unwrap())
        });
        c.bench_function(&format!("forward/{arch}/b128"), |b| b.iter(|| net.forward(&x).unwrap()));
    }
    // APGD-CE as AutoAttack runs it (100 iterations, one restart) on every point of the batch: the
    // peer times torchattacks' `attack_single_run`, the same work on the same points.
    let mut g = c.benchmark_group("apgd_ce100");
    g.sample_size(10);
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let net = net(arch);
        let apgd = Apgd { eps: 0.1, steps: 100, norm: Norm::Linf, restarts: 1, loss: LossKind::CrossEntropy, seed: 0 };
        g.bench_function(format!("{arch}/b128"), |b| b.iter(|| apgd.perturb(&net, &x, &y, None, &ids).unwrap()));
    }
    g.finish();
    // The sparse nets the study trains and attacks: a magnitude mask keeping the density of every
    // layer (uniform), the output layer included.
    for (arch, density) in [("lenet-300-100", 0.05), ("lenet-300-100", 0.02), ("lenet5-caffe", 0.05)] {
        let net = masked(arch, density);
        let pgd10 = Pgd { random_start: false, ..Pgd::linf(0.1, 10, 0.01, 0) };
        c.bench_function(&format!("pgd10/{arch}-d{density}/b128"), |b| {
            b.iter(|| pgd10.perturb(&net, &x, &y, None, &ids).unwrap())
        });
    }
}

/// `arch` at initialisation with a magnitude mask keeping `density` of every layer's weights.
fn masked(arch: &str, density: f64) -> Net {
    let mut n = net(arch);
    let w: std::collections::BTreeMap<String, Tensor> =
        n.weights().map(|(k, v)| (k.clone(), v.as_tensor().abs().unwrap())).collect();
    let masks =
        awt_prune::select_keeping(&w, awt_runs::Density::new(density).unwrap(), awt_prune::Allocation::Uniform, &[])
            .unwrap();
    for (k, m) in &masks {
        n.set_mask(k, m).unwrap();
    }
    n
}

/// Structured NTK of two batches of 64 (full k×k blocks and traced), and the gradient of
/// ‖Θ_s − Θ_T‖² (kernel + one backward), as neural-tangents' `nt_bench.py` measures; the traced
/// diagonal of 256 examples.
fn ntk(c: &mut Criterion) {
    use awt_base::{Stage, Staged};
    use awt_ntk::{Kind, structured, structured_diagonal};
    let (x1, _) = inputs(64);
    let x2 = {
        let mut rng = awt_base::Rng::new(1);
        Tensor::from_vec(rng.uniform_vec_f32(64 * 784, 0.0, 1.0), (64, 1, 28, 28), &Device::Cpu).unwrap()
    };
    for arch in ["lenet-300-100", "lenet5-caffe", "lenet5-caffe-avgpool"] {
        let net = net(arch.trim_end_matches("-avgpool"));
        let stages: Vec<Stage> = net
            .stages()
            .into_iter()
            .map(|s| if arch.ends_with("avgpool") && matches!(s, Stage::MaxPool2) { Stage::AvgPool2 } else { s })
            .collect();
        let mut g = c.benchmark_group(format!("ntk/{arch}/n64x64"));
        g.sample_size(10);
        g.bench_function("full", |b| b.iter(|| structured(&stages, &x1, &x2, Kind::Full).unwrap()));
        g.bench_function("traced", |b| b.iter(|| structured(&stages, &x1, &x2, Kind::Trace).unwrap()));
        // A batch with itself (X1 = X2), as a Gram matrix of training inputs is computed.
        g.bench_function("gram", |b| b.iter(|| structured(&stages, &x1, &x1, Kind::Full).unwrap()));
        if !arch.ends_with("avgpool") {
            let target = structured(&stages, &x1, &x2, Kind::Full).unwrap().detach();
            g.bench_function("loss_gradient", |b| {
                b.iter(|| {
                    let k = structured(&stages, &x1, &x2, Kind::Full).unwrap();
                    (k - &target).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap()
                })
            });
        }
        g.finish();
        // Each example's kernel with itself, traced, for 256 examples (as `awt ntk --diagonal --trace`).
        let (x256, _) = inputs(256);
        let mut g = c.benchmark_group(format!("ntk/{arch}/diag256"));
        g.sample_size(10);
        g.bench_function("traced", |b| b.iter(|| structured_diagonal(&stages, &x256, Kind::Trace).unwrap()));
        g.finish();
    }
}

/// One AWT search step at batch 64 (PGD-10 against the teacher, both 32×32 kernels, output and L2
/// terms, one backward, Adam), measured as a 2-step search minus a 1-step search.
fn awt_step(c: &mut Criterion) {
    use awt_ticket::{Method, SearchConfig, search};
    let ds = awt_data::load("fashion-mnist-mini", &awt_data::LoadOptions::offline_embedded_only()).unwrap();
    let train = ds.train.subset(0, 256).unwrap();
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let teacher = net(arch);
        let mut g = c.benchmark_group(format!("awt_search/{arch}/b64"));
        g.sample_size(10);
        for steps in [1, 2] {
            let cfg = SearchConfig {
                steps,
                mask_every: 0,
                lambda_ker: 1.0,
                ..SearchConfig::defaults(Method::Awt, awt_runs::Density::new(0.05).unwrap())
            }
            .validate()
            .unwrap();
            g.bench_function(format!("{steps}_steps"), |b| {
                b.iter(|| search(&teacher, &train, &cfg, &mut |_| {}).unwrap())
            });
        }
        g.finish();
    }
}

/// Where one LeNet-5 / MLP AWT search step's time goes (issue 25): PGD-10 against the dense teacher
/// at batch 64, the teacher's 32×32 full kernel (detached), and the student's masked kernel at
/// density 0.05 with the backward of the kernel loss.
fn awt_parts(c: &mut Criterion) {
    use awt_base::Staged;
    use awt_ntk::{Kind, structured};
    let (x, y) = inputs(64);
    let ids: Vec<u64> = (0..64).collect();
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let teacher = net(arch);
        let student = masked(arch, 0.05);
        let (x1, x2) = (x.narrow(0, 0, 32).unwrap(), x.narrow(0, 32, 32).unwrap());
        let target = structured(&teacher.stages(), &x1, &x2, Kind::Full).unwrap().detach();
        let pgd = Pgd::linf(0.1, 10, 0.025, 0);
        let mut g = c.benchmark_group(format!("awt_parts/{arch}/b64"));
        g.sample_size(10);
        g.bench_function("pgd10_teacher", |b| b.iter(|| pgd.last_iterate(&teacher, &x, &y, &ids).unwrap()));
        g.bench_function("teacher_kernel", |b| {
            b.iter(|| structured(&teacher.stages(), &x1, &x2, Kind::Full).unwrap().detach())
        });
        g.bench_function("student_kernel", |b| b.iter(|| structured(&student.stages(), &x1, &x2, Kind::Full).unwrap()));
        g.bench_function("student_kernel_loss_gradient", |b| {
            b.iter(|| {
                let k = structured(&student.stages(), &x1, &x2, Kind::Full).unwrap();
                (k - &target).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap()
            })
        });
        g.finish();
    }
}

/// One Adam update of every parameter of a network (the optimiser step of each adversarial-training
/// batch), its gradients already computed.
fn adam_step(c: &mut Criterion) {
    use awt_train::{Optimizer, OptimizerConfig};
    for arch in ["lenet-300-100", "lenet5-caffe"] {
        let model = net(arch);
        let (x, y) = inputs(128);
        let grads = candle_nn_free_ce(&model.forward(&x).unwrap(), &y).backward().unwrap();
        let vars: Vec<_> = model.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let cfg = OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false };
        let mut opt = Optimizer::new(cfg, vars);
        c.bench_function(&format!("adam_step/{arch}"), |b| b.iter(|| opt.step(&grads, 1e-3).unwrap()));
    }
}

/// The machine's f32 GEMM rate (1024³, candle's matmul = the gemm crate's kernels), against which
/// `cargo xtask bench --peers` reports each hot path's achieved GFLOP/s.
fn gemm_rate(c: &mut Criterion) {
    let mut rng = awt_base::Rng::new(2);
    let n = 1024;
    let a = Tensor::from_vec(rng.uniform_vec_f32(n * n, -1.0, 1.0), (n, n), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(rng.uniform_vec_f32(n * n, -1.0, 1.0), (n, n), &Device::Cpu).unwrap();
    #[allow(clippy::disallowed_methods)] // the machine's rate through candle's own matmul
    c.bench_function("gemm/f32/1024", |bch| bch.iter(|| a.matmul(&b).unwrap()));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = gemm_rate, forward_backward, pgd_step, ntk, awt_step, awt_parts, adam_step
}
// criterion_main! written out, so that candle's thread count is pinned before anything runs.
#[allow(unsafe_code)]
fn main() {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { awt_base::pin_candle_threads() };
    awt_base::keep_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
