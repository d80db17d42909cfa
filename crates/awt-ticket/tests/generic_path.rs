//! The device-generic path — what `--device cuda` runs: plain candle ops, no hand-written CPU
//! kernel — computes what the CPU kernels compute. Each check runs the same call twice on the CPU,
//! once as usual and once inside `awt_base::device::generic_path`, where any CPU-only kernel still
//! reached is an error (as it would be on a GPU), on LeNet-300-100 and LeNet-5 with sparse masks:
//! forward, input gradient, PGD, an adversarial-training epoch, the NTK (and its weight gradient)
//! and AWT search steps. In f64, so that the two summation orders agree to ~1e-10 and a PGD sign
//! never flips by rounding.

use awt_attack::{Attack, LossKind, Pgd, per_example_loss};
use awt_base::device::generic_path;
use awt_base::{Classifier, Staged};
use awt_data::{LoadOptions, Split, synthetic};
use awt_nets::{Arch, Init, Net};
use awt_ntk::{Kind, structured};
use awt_ticket::{Method, SearchConfig, search};
use awt_train::{NoHooks, Objective, OptimizerConfig, RunFolder, Schedule, TrainConfig, train};
use candle_core::{DType, Device, Module, Tensor};

fn density(x: f64) -> awt_runs::Density {
    awt_runs::Density::new(x).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

/// A net in f64 with a random 5 % mask on every weight (so the sparse kernels are the ones
/// compared), and a batch of test images.
fn sparse_net(arch: &Arch, seed: u64) -> Net {
    let mut net = Net::init(arch, Init::KaimingUniform, seed, DType::F64, &Device::Cpu).unwrap();
    let w = net.weight_names().into_iter().map(|k| (k.clone(), net.param(&k).unwrap().as_tensor().clone())).collect();
    let scores = awt_prune::scores::random(&w, seed + 1).unwrap();
    for (k, m) in awt_prune::select(&scores, density(0.05), awt_prune::Allocation::Uniform).unwrap() {
        net.set_mask(&k, &m).unwrap();
    }
    net.apply_masks().unwrap();
    net
}

fn batch(n: usize) -> (Tensor, Tensor) {
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    let (x, y) = ds.test.batch(&(0..n).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    (x.to_dtype(DType::F64).unwrap(), y)
}

const ARCHES: [Arch; 2] = [Arch::Lenet300100, Arch::Lenet5Caffe];

#[test]
fn forward_input_gradient_and_pgd_agree() {
    let (x, y) = batch(16);
    let ids: Vec<u64> = (0..16).collect();
    for arch in ARCHES {
        let net = sparse_net(&arch, 1);
        let ce = |z: &Tensor| per_example_loss(z, &y, None, LossKind::CrossEntropy);
        let run = || {
            let z = net.forward(&x).unwrap();
            let (_, l, g) = net.loss_and_input_grad(&x, &ce).unwrap();
            let pgd = Pgd::linf(0.1, 10, 0.025, 7).perturb(&net, &x, &y, None, &ids).unwrap();
            (z, l, g, pgd)
        };
        let (z, l, g, pgd) = run();
        let (zg, lg, gg, pgdg) = generic_path(run);
        assert!(max_diff(&z, &zg) < 1e-10, "{arch:?} logits");
        assert!(max_diff(&l, &lg) < 1e-10, "{arch:?} loss");
        assert!(max_diff(&g, &gg) < 1e-10, "{arch:?} input gradient");
        assert!(max_diff(&pgd.adv, &pgdg.adv) < 1e-9, "{arch:?} PGD iterate");
        assert_eq!(pgd.fooled, pgdg.fooled, "{arch:?} PGD outcome");
        assert!(pgd.fooled.iter().any(|f| *f) && pgd.fooled.iter().any(|f| !*f), "{arch:?}: a check that can fail");
    }
}

#[test]
fn an_adversarial_training_epoch_agrees() {
    let all = synthetic::prototypes(96, [1, 28, 28], 10, 0.3, 3);
    let (tr, te): (Split, Split) = (all.subset(0, 64).unwrap(), all.subset(64, 32).unwrap());
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 32,
        lr: 1e-3,
        optimizer: OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
        schedule: Schedule::Constant,
        objective: Objective::Pgd { eps: 0.1, steps: 3, step_size: 0.04 },
        seed: 5,
        eval_n: 32,
        eval_eps: 0.1,
        eval_steps: 3,
    };
    for arch in ARCHES {
        let run = || {
            let net = sparse_net(&arch, 2);
            let dir = tempfile::tempdir().unwrap();
            let hash = format!("{cfg:?}");
            let folder = RunFolder::open(dir.path(), &hash, &hash, false).unwrap();
            let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let s = train(&net, vars, &tr, &te, &cfg.clone().validate().unwrap(), &folder, &mut NoHooks).unwrap();
            (net, s.epochs[0].clone())
        };
        let (net, m) = run();
        let (netg, mg) = generic_path(run);
        for (k, v) in net.params() {
            let d = max_diff(v.as_tensor(), netg.param(k).unwrap().as_tensor());
            assert!(d < 1e-9, "{arch:?} {k} after an epoch differs by {d}");
        }
        assert!((m.train_loss - mg.train_loss).abs() < 1e-9, "{arch:?} training loss");
        assert_eq!((m.clean_acc, m.robust_acc), (mg.clean_acc, mg.robust_acc), "{arch:?} evaluation");
    }
}

#[test]
fn the_kernel_and_its_weight_gradient_agree() {
    let (x, _) = batch(6);
    let (x1, x2) = (x.narrow(0, 0, 4).unwrap(), x.narrow(0, 4, 2).unwrap());
    // Sparse nets take the kept-weight kernels, dense ones the per-example ones.
    let nets = ARCHES
        .iter()
        .flat_map(|a| [sparse_net(a, 3), Net::init(a, Init::KaimingUniform, 3, DType::F64, &Device::Cpu).unwrap()]);
    for net in nets {
        let arch = net.arch().clone();
        let run = |kind| {
            let k = structured(&net.stages(), &x1, &x2, kind).unwrap();
            let g = k.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let grads: Vec<Tensor> =
                net.weight_names().iter().map(|n| g.get(net.param(n).unwrap().as_tensor()).unwrap().clone()).collect();
            (k, grads)
        };
        for kind in [Kind::Full, Kind::Trace] {
            let (k, grads) = run(kind);
            let (kg, gradsg) = generic_path(|| run(kind));
            let scale = k.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(max_diff(&k, &kg) < 1e-10 * scale, "{arch:?} {kind:?} kernel");
            for (a, b) in grads.iter().zip(&gradsg) {
                let s = a.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
                assert!(max_diff(a, b) < 1e-9 * s.max(1.0), "{arch:?} {kind:?} kernel gradient");
            }
        }
    }
}

#[test]
fn awt_search_steps_agree() {
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    for arch in ARCHES {
        let teacher = Net::init(&arch, Init::KaimingUniform, 4, DType::F64, &Device::Cpu).unwrap();
        let cfg = SearchConfig {
            steps: 3,
            batch: 8,
            attack_steps: 3,
            attack_step_size: 0.04,
            lambda_ker: 1e-3,
            ..SearchConfig::defaults(Method::Awt, density(0.05))
        }
        .validate()
        .unwrap();
        let run = || search(&teacher, &ds.train, &cfg, &mut |_| {}).unwrap();
        let (t, tg) = (run(), generic_path(run));
        for (k, v) in t.net.params() {
            let d = max_diff(v.as_tensor(), tg.net.param(k).unwrap().as_tensor());
            assert!(d < 1e-9, "{arch:?} {k} after the search differs by {d}");
        }
        assert_eq!(t.net.masks().keys().collect::<Vec<_>>(), tg.net.masks().keys().collect::<Vec<_>>());
        for (k, m) in t.net.masks() {
            assert_eq!(max_diff(m, &tg.net.masks()[k]), 0.0, "{arch:?} mask {k}");
        }
        for (a, b) in t.log.iter().zip(&tg.log) {
            assert!((a.loss - b.loss).abs() < 1e-9 * a.loss.abs().max(1.0), "{arch:?} step {} loss", a.step);
        }
    }
}
