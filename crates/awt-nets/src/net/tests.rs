//! Tests of the parent module.

use super::*;

fn values(net: &Net) -> Vec<Vec<f32>> {
    net.params().values().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

#[test]
fn same_seed_same_weights_different_seed_differs() {
    let a = Arch::Lenet5Caffe;
    let n0 = Net::init(&a, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    let n0b = Net::init(&a, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    let n1 = Net::init(&a, Init::KaimingUniform, 1, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(values(&n0), values(&n0b));
    assert_ne!(values(&n0), values(&n1));
}

#[test]
fn init_statistics_follow_pytorch_and_glorot() {
    let a = Arch::Lenet300100;
    let k = Net::init(&a, Init::KaimingUniform, 3, DType::F64, &Device::Cpu).unwrap();
    let w = k.param("fc1.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let bound = 1.0 / 784f64.sqrt();
    assert!(w.iter().all(|x| x.abs() <= bound));
    let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
    assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.02, "{var}");
    let g = Net::init(&a, Init::GlorotNormal, 3, DType::F64, &Device::Cpu).unwrap();
    let w = g.param("fc2.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
    assert!((var / (2.0 / 400.0) - 1.0).abs() < 0.03, "{var}");
    let b = g.param("fc2.bias").unwrap().as_tensor().to_vec1::<f64>().unwrap();
    assert!(b.iter().all(|&x| x == 0.0));
}

#[test]
fn masks_zero_weights_in_forward_and_gradient() {
    let a = Arch::Mlp(vec![4, 3, 2]);
    let mut net = Net::init(&a, Init::KaimingUniform, 0, DType::F64, &Device::Cpu).unwrap();
    let m = Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0], (3, 4), &Device::Cpu)
        .unwrap();
    net.set_mask("fc1.weight", &m).unwrap();
    let x = Tensor::from_vec(vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], (2, 4), &Device::Cpu).unwrap();
    let g = net.forward(&x).unwrap().sum_all().unwrap().backward().unwrap();
    let gw = g.get(net.param("fc1.weight").unwrap().as_tensor()).unwrap();
    let gm = gw.mul(&(1.0 - &m).unwrap()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(gm, 0.0);
    // The bias is never masked and the mask must be 0/1 of the weight's shape.
    assert!(net.set_mask("fc1.bias", &Tensor::ones(3, DType::F64, &Device::Cpu).unwrap()).is_err());
    assert!(net.set_mask("fc1.weight", &Tensor::ones((4, 3), DType::F64, &Device::Cpu).unwrap()).is_err());
    assert!(net.set_mask("fc1.weight", &(m.clone() * 0.5).unwrap()).is_err());
    assert!((net.densities().unwrap()["fc1.weight"] - 6.0 / 12.0).abs() < 1e-12);
}

#[test]
fn explicit_input_gradient_equals_autograd_for_every_architecture() {
    use awt_base::{Autograd, Classifier};
    let loss = |z: &Tensor| -> candle_core::Result<Tensor> {
        // A per-example loss that mixes all logits non-linearly.
        let w = Tensor::arange(1.0f64, z.dim(1)? as f64 + 1.0, z.device())?;
        z.sqr()?.broadcast_mul(&w)?.sum(1)?.sqrt()
    };
    let mut rng = Rng::new(5);
    for (arch, shape) in [
        (Arch::Lenet300100, vec![3, 1, 28, 28]),
        (Arch::Lenet5Caffe, vec![3, 1, 28, 28]),
        (Arch::Conv4, vec![2, 3, 32, 32]),
        (Arch::Mlp(vec![12, 7, 5]), vec![3, 12]),
    ] {
        let mut net = Net::init(&arch, Init::KaimingUniform, 1, DType::F64, &Device::Cpu).unwrap();
        for name in net.weight_names() {
            let w = net.param(&name).unwrap().as_tensor().clone();
            let m: Vec<f64> = (0..w.elem_count()).map(|_| if rng.uniform() < 0.7 { 1.0 } else { 0.0 }).collect();
            net.set_mask(&name, &Tensor::from_vec(m, w.shape(), &Device::Cpu).unwrap()).unwrap();
        }
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec((0..n).map(|_| rng.uniform()).collect::<Vec<f64>>(), shape.as_slice(), &Device::Cpu)
            .unwrap();
        let (_, la, ga) = Autograd(&net).loss_and_input_grad(&x, &loss).unwrap();
        let (_, lb, gb) = net.loss_and_input_grad(&x, &loss).unwrap();
        let diff =
            (ga - &gb).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
        let scale = gb.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
        assert!(diff <= 1e-12 * scale.max(1.0), "{arch}: max diff {diff} (scale {scale})");
        // The explicit path multiplies with gemm directly, candle through its own dispatch: the
        // same sums in another order, so the losses agree to rounding.
        for (p, q) in la.to_vec1::<f64>().unwrap().iter().zip(lb.to_vec1::<f64>().unwrap()) {
            assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{arch}: loss {p} vs {q}");
        }
        // `predict` (graph-free) gives the logits of `logits` (candle's graph), also from flat rows.
        let flat = x.flatten_from(1).unwrap();
        for input in [&x, &flat] {
            let (a, b) = (net.logits(input).unwrap(), net.predict(input).unwrap());
            assert!(!b.is_variable() && b.dims() == a.dims(), "{arch}: predict's shape");
            let diff = (a - &b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f64>().unwrap() <= 1e-12, "{arch}: predict differs from logits");
        }
    }
}

#[test]
fn ntt_init_draws_glorot_weights_and_small_normal_biases() {
    let g = Net::init(&Arch::Lenet300100, Init::Ntt, 3, DType::F64, &Device::Cpu).unwrap();
    let w = g.param("fc1.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
    assert!((var / (2.0 / 1084.0) - 1.0).abs() < 0.02, "{var}");
    let b = g.param("fc1.bias").unwrap().as_tensor().to_vec1::<f64>().unwrap();
    let bvar = b.iter().map(|x| x * x).sum::<f64>() / b.len() as f64;
    assert!((bvar / 1e-4 - 1.0).abs() < 0.25, "{bvar}");
    assert_eq!("ntt".parse::<Init>().unwrap(), Init::Ntt);
}

#[test]
fn input_standardisation_is_the_first_stage_and_round_trips_through_checkpoints() {
    use awt_base::{Autograd, Classifier};
    let dev = Device::Cpu;
    let mut rng = Rng::new(4);
    for (arch, norm) in [
        (Arch::Lenet5Caffe, InputNorm { mean: vec![0.3], std: vec![0.5] }),
        (Arch::Conv4, InputNorm { mean: vec![0.1, 0.2, 0.3], std: vec![0.5, 1.0, 2.0] }),
    ] {
        let plain = Net::init(&arch, Init::KaimingUniform, 1, DType::F64, &dev).unwrap();
        let mut net = plain.clone();
        net.set_input_norm(Some(norm.clone())).unwrap();
        let mut shape = vec![2];
        shape.extend(arch.input_shape());
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec((0..n).map(|_| rng.uniform()).collect::<Vec<f64>>(), shape.as_slice(), &dev).unwrap();
        // By hand: (x - mean_c) / std_c per channel, then the plain network.
        let c = shape[1];
        let m = Tensor::from_vec(norm.mean.repeat(c / norm.mean.len()), (1, c, 1, 1), &dev).unwrap();
        let s = Tensor::from_vec(norm.std.repeat(c / norm.std.len()), (1, c, 1, 1), &dev).unwrap();
        let xs = x.broadcast_sub(&m).unwrap().broadcast_div(&s).unwrap();
        let a = net.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let b = plain.forward(&xs).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{arch}: {p} vs {q}");
        }
        // The explicit input gradient passes through the standardisation.
        let loss = |z: &Tensor| z.sqr()?.sum(1);
        let (_, _, ga) = Autograd(&net).loss_and_input_grad(&x, &loss).unwrap();
        let (_, _, gb) = net.loss_and_input_grad(&x, &loss).unwrap();
        let d = (ga - gb).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
        assert!(d < 1e-10, "{arch}: input gradient differs by {d}");
        // Checkpoints keep it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.safetensors");
        crate::save(&net, &p).unwrap();
        let back = crate::load(&p, None, DType::F64, &dev).unwrap().net;
        assert_eq!(back.input_norm(), Some(&norm));
    }
    // Impossible settings are refused, naming what is wrong.
    let mut net = Net::init(&Arch::Conv4, Init::KaimingUniform, 1, DType::F64, &dev).unwrap();
    let e = net.set_input_norm(Some(InputNorm { mean: vec![0.1, 0.2], std: vec![1.0, 1.0] })).unwrap_err();
    assert!(e.to_string().contains("per input channel"), "{e}");
    let e = net.set_input_norm(Some(InputNorm { mean: vec![0.1], std: vec![0.0] })).unwrap_err();
    assert!(e.to_string().contains("> 0"), "{e}");
}

#[test]
fn the_raw_buffer_input_gradient_equals_the_staged_candle_path() {
    // f64 ≤ 1e-10 and f32 ≤ 1e-5 (relative), for every layer type: masked weights, both pools,
    // convolutions, standardisation, ties in max-pool windows (all-zero images).
    let loss = |z: &Tensor| -> candle_core::Result<Tensor> {
        let w = Tensor::arange(1.0f64, z.dim(1)? as f64 + 1.0, z.device())?.to_dtype(z.dtype())?;
        z.sqr()?.broadcast_mul(&w)?.sum(1)?.sqrt()
    };
    let mut rng = Rng::new(8);
    let avg = Arch::Lenet5Caffe;
    // The last case: convolutions without biases and a blank image at the standardisation's mean,
    // so every convolution output of that image is exactly 0 and no gradient may pass its ReLU (the
    // fused convolution-ReLU-pool path must stop it where the maximum is not positive, 0 included).
    // Kept fractions of 0.6 take the dense products on `W ⊙ M`; of 0.04 (the study's densities)
    // the linear layers and convolutions take the products over kept weights (`fast::sparse`):
    // fused with ReLU and max-pool (LeNet-5), alone (Conv4's first), and stopped by the ReLU.
    for (arch, shape, pool_avg, zero_conv_bias, keep) in [
        (Arch::Lenet300100, vec![4, 1, 28, 28], false, false, 0.6),
        (Arch::Lenet300100, vec![4, 1, 28, 28], false, false, 0.04),
        (Arch::Lenet5Caffe, vec![3, 1, 28, 28], false, false, 0.6),
        (Arch::Lenet5Caffe, vec![3, 1, 28, 28], false, false, 0.04),
        (avg.clone(), vec![3, 1, 28, 28], true, false, 0.6),
        (Arch::Conv4, vec![2, 3, 32, 32], false, false, 0.6),
        (Arch::Conv4, vec![2, 3, 32, 32], false, false, 0.04),
        (Arch::Lenet5Caffe, vec![3, 1, 28, 28], false, true, 0.6),
        (Arch::Lenet5Caffe, vec![3, 1, 28, 28], false, true, 0.04),
    ] {
        for dtype in [DType::F64, DType::F32] {
            let mut net = Net::init(&arch, Init::KaimingUniform, 2, DType::F64, &Device::Cpu).unwrap();
            if zero_conv_bias {
                for name in net.weight_names() {
                    if net.param(&name).unwrap().as_tensor().rank() == 4 {
                        let b = net.param(&name.replace(".weight", ".bias")).unwrap();
                        b.set(&b.as_tensor().zeros_like().unwrap()).unwrap();
                    }
                }
            }
            for name in net.weight_names() {
                let w = net.param(&name).unwrap().as_tensor().clone();
                let m: Vec<f64> = (0..w.elem_count()).map(|_| f64::from(u8::from(rng.uniform() < keep))).collect();
                net.set_mask(&name, &Tensor::from_vec(m, w.shape(), &Device::Cpu).unwrap()).unwrap();
            }
            net.set_input_norm(Some(InputNorm { mean: vec![0.25], std: vec![0.5] })).unwrap();
            let net = net.to_dtype(dtype).unwrap();
            let stages: Vec<Stage> = net
                .stages()
                .into_iter()
                .map(|s| if pool_avg && matches!(s, Stage::MaxPool2) { Stage::AvgPool2 } else { s })
                .collect();
            let n: usize = shape.iter().product();
            // The last image is blank: every max-pool window of its first layer is a tie.
            let mut v: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            let per = n / shape[0];
            let blank = if zero_conv_bias { 0.25 } else { 0.0 };
            v[n - per..].iter_mut().for_each(|p| *p = blank);
            let x = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let (fl, fls, fg) = crate::fast::loss_and_input_grad(&stages, &x, &loss).unwrap().unwrap();
            let st: Vec<Stage> = stages.iter().cloned().map(detach_stage).collect();
            let (sl, inputs) = awt_base::forward_keep(&st, &x).unwrap();
            let lv = Var::from_tensor(&sl).unwrap();
            let l = loss(lv.as_tensor()).unwrap();
            let v = l.sum_all().unwrap().backward().unwrap().get(lv.as_tensor()).unwrap().clone();
            let sg = awt_base::backward_stages(&st, &inputs, &v).unwrap();
            let tol = if dtype == DType::F64 { 1e-10 } else { 1e-5 };
            let rel = |a: &Tensor, b: &Tensor| {
                let a = a.to_dtype(DType::F64).unwrap();
                let b = b.to_dtype(DType::F64).unwrap();
                let d = (&a - &b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
                d / s.max(1e-30)
            };
            assert!(rel(&fl, &sl) <= tol, "{arch} {dtype:?}: logits differ by {}", rel(&fl, &sl));
            // The graph-free forward (`Classifier::predict`) is the same forward pass.
            let pl = crate::fast::logits(&stages, &x).unwrap().unwrap();
            assert_eq!(rel(&pl, &fl), 0.0, "{arch} {dtype:?}: predict differs from the gradient pass's logits");
            assert!(rel(&fls, &l) <= tol, "{arch} {dtype:?}: losses differ");
            assert!(
                rel(&fg, &sg) <= tol,
                "{arch} avg={pool_avg} {dtype:?}: input gradients differ by {}",
                rel(&fg, &sg)
            );
        }
    }
}

#[test]
fn all_ones_mask_equals_dense() {
    let a = Arch::Lenet5Caffe;
    let dense = Net::init(&a, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    let mut masked = dense.clone();
    for n in dense.weight_names() {
        let w = dense.param(&n).unwrap();
        masked.set_mask(&n, &w.ones_like().unwrap()).unwrap();
    }
    let mut rng = Rng::new(0);
    let x = Tensor::from_vec(rng.uniform_vec_f32(3 * 784, 0.0, 1.0), (3, 1, 28, 28), &Device::Cpu).unwrap();
    let a = dense.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = masked.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
}
