//! The NTK checks of docs/checks.md: structured = autograd reference for every zoo
//! architecture (masked and not, X1 = X2 and X1 ≠ X2, clean and adversarial inputs), symmetry and
//! PSD, traced = trace of full, all-ones mask = dense, zero mask = bias part only, and the gradient
//! of the kernel-matching loss against central finite differences in f64.

use awt_base::{Rng, Stage, Staged};
use awt_nets::{Arch, Init, InputNorm, Net};
use awt_ntk::{Kind, metrics, reference, structured, structured_blocked, structured_diagonal, trace_full};
use candle_core::{DType, Device, Module, Tensor};

fn inputs(arch: &Arch, n: usize, seed: u64, dtype: DType) -> Tensor {
    let mut shape = vec![n];
    shape.extend(arch.input_shape());
    let len: usize = shape.iter().product();
    let mut r = Rng::new(seed);
    Tensor::from_vec((0..len).map(|_| r.uniform()).collect::<Vec<f64>>(), shape.as_slice(), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn mask_randomly(net: &mut Net, keep: f64, seed: u64) {
    let mut r = Rng::new(seed);
    for name in net.weight_names() {
        let w = net.param(&name).unwrap().as_tensor().clone();
        let m: Vec<f64> = (0..w.elem_count()).map(|_| if r.uniform() < keep { 1.0 } else { 0.0 }).collect();
        let m = Tensor::from_vec(m, w.shape(), &Device::Cpu).unwrap().to_dtype(w.dtype()).unwrap();
        net.set_mask(&name, &m).unwrap();
    }
}

fn max_abs(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    max_abs(&(a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap()) / max_abs(b).max(1e-300)
}

fn oracle(net: &Net, x1: &Tensor, x2: &Tensor, kind: Kind) -> Tensor {
    reference(&|x: &Tensor| net.forward(x), &net.vars(), x1, x2, kind).unwrap()
}

/// Structured vs reference on one architecture, masked and dense, X1 = X2 and X1 ≠ X2.
fn check_agreement(arch: Arch, dtype: DType, tol: f64, n1: usize, n2: usize) {
    check_agreement_with(arch, None, dtype, tol, n1, n2)
}

fn check_agreement_with(arch: Arch, norm: Option<InputNorm>, dtype: DType, tol: f64, n1: usize, n2: usize) {
    // Dense; a mask denser than 0.25 (masked Gram as one dense product); a sparse one (gathered Gram;
    // convolution gradients at the kept weights only).
    for keep in [None, Some(0.4), Some(0.1)] {
        let mut net = Net::init(&arch, Init::KaimingUniform, 3, dtype, &Device::Cpu).unwrap();
        net.set_input_norm(norm.clone()).unwrap();
        if let Some(k) = keep {
            mask_randomly(&mut net, k, 9);
        }
        let stages = net.stages();
        let x1 = inputs(&arch, n1, 1, dtype);
        let x2 = inputs(&arch, n2, 2, dtype);
        for (a, b) in [(&x1, &x1), (&x1, &x2)] {
            let s = structured(&stages, a, b, Kind::Full).unwrap();
            let r = oracle(&net, a, b, Kind::Full);
            let e = rel_err(&s, &r);
            assert!(
                e <= tol,
                "{arch} {dtype:?} mask={keep:?} same={}: relative error {e:.3e} > {tol:e}",
                a.id() == b.id()
            );
            // The traced kernel (its own contraction, sharing the masked Gram) is the trace of the full one.
            let t = structured(&stages, a, b, Kind::Trace).unwrap();
            let e = rel_err(&t, &trace_full(&s, a.dim(0).unwrap(), b.dim(0).unwrap()).unwrap());
            assert!(e <= tol, "{arch} {dtype:?} mask={keep:?}: traced kernel off by {e:.3e}");
        }
    }
}

#[test]
fn structured_equals_reference_with_input_standardisation() {
    let one = InputNorm { mean: vec![0.3], std: vec![0.4] };
    check_agreement_with(Arch::Lenet300100, Some(one.clone()), DType::F64, 1e-10, 3, 2);
    check_agreement_with(Arch::Lenet5Caffe, Some(one), DType::F64, 1e-10, 2, 2);
    let per_channel = InputNorm { mean: vec![0.5, 0.4, 0.3], std: vec![0.25, 0.5, 2.0] };
    check_agreement_with(Arch::Conv4, Some(per_channel), DType::F64, 1e-10, 2, 1);
}

#[test]
fn structured_equals_reference_in_f64_for_every_architecture() {
    check_agreement(Arch::Lenet300100, DType::F64, 1e-10, 3, 2);
    check_agreement(Arch::Lenet5Caffe, DType::F64, 1e-10, 3, 2);
    check_agreement(Arch::Conv4, DType::F64, 1e-10, 2, 1);
    check_agreement(Arch::Mlp(vec![20, 16, 12, 5]), DType::F64, 1e-10, 4, 3);
}

#[test]
fn structured_equals_reference_in_f32() {
    check_agreement(Arch::Lenet300100, DType::F32, 5e-3, 3, 2);
    check_agreement(Arch::Lenet5Caffe, DType::F32, 5e-3, 2, 2);
}

#[test]
fn agreement_holds_on_adversarial_inputs() {
    use awt_attack::{Attack, Pgd};
    let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 4, DType::F64, &Device::Cpu).unwrap();
    let x = inputs(&Arch::Lenet300100, 3, 5, DType::F64);
    let y = Tensor::new(&[1u32, 4, 7], &Device::Cpu).unwrap();
    let pgd = Pgd::linf(0.1, 5, 0.025, 0);
    let xa = pgd.perturb(&net, &x, &y, None, &[0, 1, 2]).unwrap().adv;
    let s = structured(&net.stages(), &xa, &xa, Kind::Full).unwrap();
    assert!(rel_err(&s, &oracle(&net, &xa, &xa, Kind::Full)) <= 1e-10);
}

#[test]
fn kernel_is_symmetric_psd_transposes_and_traces() {
    for arch in [Arch::Lenet300100, Arch::Lenet5Caffe] {
        let mut net = Net::init(&arch, Init::KaimingUniform, 1, DType::F64, &Device::Cpu).unwrap();
        mask_randomly(&mut net, 0.5, 2);
        let st = net.stages();
        let (x1, x2) = (inputs(&arch, 4, 1, DType::F64), inputs(&arch, 3, 2, DType::F64));
        let k11 = structured(&st, &x1, &x1, Kind::Full).unwrap();
        assert!(rel_err(&k11, &k11.t().unwrap()) <= 1e-12, "{arch}: not symmetric");
        let ev = metrics::spectrum(&k11).unwrap();
        assert!(ev.last().unwrap() >= &(-1e-10 * ev[0]), "{arch}: negative eigenvalue {ev:?}");
        let k12 = structured(&st, &x1, &x2, Kind::Full).unwrap();
        let k21 = structured(&st, &x2, &x1, Kind::Full).unwrap();
        assert!(rel_err(&k12, &k21.t().unwrap()) <= 1e-12);
        let t12 = structured(&st, &x1, &x2, Kind::Trace).unwrap();
        assert_eq!(t12.dims(), &[4, 3]);
        assert!(rel_err(&t12, &trace_full(&k12, 4, 3).unwrap()) <= 1e-12);
        // Σ_c Θ[(i,c),(i,c)] summed over i is the trace of the full kernel.
        let t11 = structured(&st, &x1, &x1, Kind::Trace).unwrap();
        assert!(
            (metrics::trace(&t11).unwrap() - metrics::trace(&k11).unwrap()).abs()
                <= 1e-9 * metrics::trace(&k11).unwrap()
        );
        let blocked = structured_blocked(&st, &x1, &x2, Kind::Full, 2).unwrap();
        assert!(rel_err(&blocked, &k12) <= 1e-12);
        // With itself, the blocks below the diagonal are those above it, transposed.
        for (b, kind, whole) in [(2, Kind::Full, &k11), (3, Kind::Full, &k11), (3, Kind::Trace, &t11)] {
            let blocked = structured_blocked(&st, &x1, &x1, kind, b).unwrap();
            assert!(rel_err(&blocked, whole) <= 1e-12, "{arch}: blocks of {b} differ");
        }
        // One example's own k×k block is its diagonal block of the batch kernel.
        let x_one = x1.narrow(0, 1, 1).unwrap();
        let own = structured(&st, &x_one, &x_one, Kind::Full).unwrap();
        let block1 = k11.narrow(0, 10, 10).unwrap().narrow(1, 10, 10).unwrap();
        assert!(rel_err(&own, &block1) <= 1e-12);
    }
}

#[test]
fn all_ones_mask_is_dense_and_zero_mask_leaves_the_bias_part() {
    for arch in [Arch::Lenet300100, Arch::Lenet5Caffe] {
        let dense = Net::init(&arch, Init::KaimingUniform, 2, DType::F64, &Device::Cpu).unwrap();
        let x = inputs(&arch, 3, 3, DType::F64);
        let kd = structured(&dense.stages(), &x, &x, Kind::Full).unwrap();
        let mut ones = dense.clone();
        let mut zeros = dense.clone();
        for n in dense.weight_names() {
            let w = dense.param(&n).unwrap().as_tensor();
            ones.set_mask(&n, &w.ones_like().unwrap()).unwrap();
            zeros.set_mask(&n, &w.zeros_like().unwrap()).unwrap();
        }
        let ko = structured(&ones.stages(), &x, &x, Kind::Full).unwrap();
        assert_eq!(max_abs(&(&kd - &ko).unwrap()), 0.0, "{arch}: all-ones mask differs from dense");
        // With every weight pruned only the biases move the output, and only the last bias reaches
        // it: Θ[(i,c),(j,c')] = [c = c'].
        let kz = structured(&zeros.stages(), &x, &x, Kind::Full).unwrap();
        let expect = Tensor::eye(10, DType::F64, &Device::Cpu).unwrap().repeat((3, 3)).unwrap();
        assert!(max_abs(&(&kz - &expect).unwrap()) <= 1e-12, "{arch}: zero-mask kernel is not the bias part");
        assert!(rel_err(&kz, &oracle(&zeros, &x, &x, Kind::Full)) <= 1e-12);
    }
}

/// The stages of `net`, with its max-pools made average pools when `avg` (the LeNet-5 that
/// neural-tangents can build, which the benchmarks compare against).
fn stages_of(net: &Net, avg: bool) -> Vec<Stage> {
    net.stages().into_iter().map(|s| if avg && matches!(s, Stage::MaxPool2) { Stage::AvgPool2 } else { s }).collect()
}

/// ‖Θ(m ⊙ θ_s) − Θ(θ_T)‖² against central finite differences, with the teacher fixed.
fn check_kernel_loss_gradient(arch: Arch, n: usize, probes_per_tensor: usize, keep: f64) {
    check_kernel_loss_gradient_with(arch, false, n, probes_per_tensor, keep)
}

fn check_kernel_loss_gradient_with(arch: Arch, avg: bool, n: usize, probes_per_tensor: usize, keep: f64) {
    let teacher = Net::init(&arch, Init::KaimingUniform, 5, DType::F64, &Device::Cpu).unwrap();
    let mut student = teacher.deep_clone().unwrap();
    mask_randomly(&mut student, keep, 6);
    let (x1, x2) = (inputs(&arch, n, 7, DType::F64), inputs(&arch, n, 8, DType::F64));
    let kt = structured(&stages_of(&teacher, avg), &x1, &x2, Kind::Full).unwrap().detach();
    let loss = |s: &Net| -> Tensor {
        (structured(&stages_of(s, avg), &x1, &x2, Kind::Full).unwrap() - &kt).unwrap().sqr().unwrap().sum_all().unwrap()
    };
    let grads = loss(&student).backward().unwrap();
    let mut r = Rng::new(1);
    for (name, var) in student.params() {
        // The kernel does not depend on the output layer's bias: no gradient is recorded for it.
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            None => vec![0.0; var.elem_count()],
        };
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        // Probes at kept weights only: a masked-out weight's gradient is 0 both ways and tests
        // nothing (at density 0.15, random probes of a large layer nearly always land there).
        let kept: Vec<usize> = match student.masks().get(name) {
            Some(m) => m
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(i, _)| i)
                .collect(),
            None => (0..base.len()).collect(),
        };
        for _ in 0..probes_per_tensor.min(kept.len()) {
            let i = kept[r.below(kept.len() as u64) as usize];
            let h = 1e-5 * (1.0 + base[i].abs());
            let at = |v: f64| {
                let mut p = base.clone();
                p[i] = v;
                var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap()).unwrap();
                let l = loss(&student).to_scalar::<f64>().unwrap();
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                l
            };
            let fd = (at(base[i] + h) - at(base[i] - h)) / (2.0 * h);
            let tol = 1e-5 * (1.0 + fd.abs().max(g[i].abs()));
            assert!((fd - g[i]).abs() <= tol, "{arch} {name}[{i}]: finite difference {fd} vs backward {}", g[i]);
        }
    }
}

#[test]
fn kernel_loss_gradient_matches_finite_differences_in_f64() {
    check_kernel_loss_gradient(Arch::Mlp(vec![12, 9, 7, 4]), 3, 6, 0.5);
    // Below the sparse-Gram threshold, with some output units left without any input.
    check_kernel_loss_gradient(Arch::Mlp(vec![12, 9, 7, 4]), 3, 6, 0.15);
    check_kernel_loss_gradient(Arch::Lenet5Caffe, 2, 3, 0.5);
    // The convolutions' kernels from the per-example gradients at the kept weights only.
    check_kernel_loss_gradient(Arch::Lenet5Caffe, 2, 3, 0.15);
    // Average pools (their signal and the ReLU's before them as one op).
    check_kernel_loss_gradient_with(Arch::Lenet5Caffe, true, 2, 3, 0.5);
}

#[test]
fn structured_equals_reference_with_average_pools() {
    // Dense, a mask above the sparse threshold, a sparse one; X1 = X2 and X1 ≠ X2.
    for keep in [None, Some(0.4), Some(0.1)] {
        let mut net = Net::init(&Arch::Lenet5Caffe, Init::KaimingUniform, 3, DType::F64, &Device::Cpu).unwrap();
        if let Some(k) = keep {
            mask_randomly(&mut net, k, 9);
        }
        let stages = stages_of(&net, true);
        assert!(stages.iter().any(|s| matches!(s, Stage::AvgPool2)));
        let x1 = inputs(&Arch::Lenet5Caffe, 3, 1, DType::F64);
        let x2 = inputs(&Arch::Lenet5Caffe, 2, 2, DType::F64);
        let f = |x: &Tensor| awt_base::forward_stages(&stages, x);
        for (a, b) in [(&x1, &x1), (&x1, &x2)] {
            let s = structured(&stages, a, b, Kind::Full).unwrap();
            let e = rel_err(&s, &reference(&f, &net.vars(), a, b, Kind::Full).unwrap());
            assert!(e <= 1e-10, "average pools, mask={keep:?}: relative error {e:.3e}");
            let t = structured(&stages, a, b, Kind::Trace).unwrap();
            let e = rel_err(&t, &trace_full(&s, a.dim(0).unwrap(), b.dim(0).unwrap()).unwrap());
            assert!(e <= 1e-10, "average pools, mask={keep:?}: traced kernel off by {e:.3e}");
        }
    }
}

/// The diagonal blocks `(n, k, k)` of a full kernel `(n·k, n·k)`.
fn diagonal_blocks(full: &Tensor, n: usize) -> Tensor {
    let k = full.dim(0).unwrap() / n;
    let blocks: Vec<Tensor> = (0..n).map(|i| full.narrow(0, i * k, k).unwrap().narrow(1, i * k, k).unwrap()).collect();
    Tensor::stack(&blocks, 0).unwrap()
}

/// The diagonal kernel is the full kernel's diagonal blocks (and its traces the traced kernel's
/// diagonal) for every zoo network, dense and masked (the masked Gram as one product and gathered,
/// the kept-weight and dense-mask convolutions), with max and average pools; and the weights'
/// gradients through it are those through the full kernel's blocks.
#[test]
fn the_diagonal_kernel_is_the_full_kernels_diagonal_blocks() {
    let archs = [Arch::Lenet300100, Arch::Lenet5Caffe, Arch::Conv4, Arch::Mlp(vec![20, 16, 12, 5])];
    for arch in archs {
        for keep in [None, Some(0.4), Some(0.1)] {
            for avg in [false, true] {
                if avg && !matches!(arch, Arch::Lenet5Caffe) {
                    continue;
                }
                let mut net = Net::init(&arch, Init::KaimingUniform, 3, DType::F64, &Device::Cpu).unwrap();
                if let Some(k) = keep {
                    mask_randomly(&mut net, k, 9);
                }
                let st = stages_of(&net, avg);
                let n = if matches!(arch, Arch::Conv4) { 2 } else { 3 };
                let x = inputs(&arch, n, 4, DType::F64);
                let full = structured(&st, &x, &x, Kind::Full).unwrap();
                let diag = structured_diagonal(&st, &x, Kind::Full).unwrap();
                let k = net.arch().classes();
                assert_eq!(diag.dims(), &[n, k, k]);
                let e = rel_err(&diag, &diagonal_blocks(&full, n));
                assert!(e <= 1e-12, "{arch} mask {keep:?} avg {avg}: diagonal off by {e:.2e}");
                let traced = structured(&st, &x, &x, Kind::Trace).unwrap();
                let t = structured_diagonal(&st, &x, Kind::Trace).unwrap();
                let eye = Tensor::eye(n, DType::F64, &Device::Cpu).unwrap();
                let want = (traced * eye).unwrap().sum(1).unwrap();
                assert!(rel_err(&t, &want) <= 1e-12, "{arch} mask {keep:?} avg {avg}: traces differ");
                // Gradients: Σ Θ(x_i, x_i)² both ways.
                let g1 = diag.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = diagonal_blocks(&full, n).sqr().unwrap().sum_all().unwrap().backward().unwrap();
                for (name, v) in net.weights() {
                    let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                    let e = rel_err(a, b);
                    assert!(e <= 1e-10, "{arch} mask {keep:?} avg {avg} {name}: gradients differ by {e:.2e}");
                }
            }
        }
    }
}
