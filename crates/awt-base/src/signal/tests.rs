//! Tests of the backward-signal maps against their candle formulations, gradients included, and by
//! central finite differences.

use super::*;
use crate::conv;
use crate::testing::{check_fd, max_diff, rand, same_gradients};
use candle_core::{Device, Var};

/// Repeats each example's row `r` times (the candle formulation's layout).
fn repeat(m: &Tensor, r: usize) -> Tensor {
    let mut shape = m.dims().to_vec();
    let mut b = vec![shape[0], r];
    b.extend_from_slice(&shape[1..]);
    shape[0] *= r;
    m.unsqueeze(1).unwrap().broadcast_as(b.as_slice()).unwrap().reshape(shape.as_slice()).unwrap()
}

#[test]
fn relu_route_equals_the_repeated_mask_with_gradients() {
    // Small (one thread) and past 2·ROUTE_TASK values (split over the pool, a ragged last task).
    for (n, r, c) in [(2, 3, 2), (3, 7, 8400)] {
        let x = rand(&[n, c, 3, 2], 1);
        let d = Var::from_tensor(&rand(&[n * r, c, 3, 2], 2)).unwrap();
        let fast = d.as_tensor().apply_op2(&x, ReluRoute).unwrap();
        let slow = d.as_tensor().mul(&repeat(&x.gt(0.0).unwrap().to_dtype(x.dtype()).unwrap(), r)).unwrap();
        assert_eq!(max_diff(&fast, &slow), 0.0, "{n}×{r}×{c}");
        let w = rand(fast.dims(), 3);
        same_gradients(&fast, &slow, &w, &[&d], 1e-15);
    }
    let (n, r) = (2, 3);
    let d = Var::from_tensor(&rand(&[n * r, 2, 3, 2], 2)).unwrap();
    assert!(d.as_tensor().apply_op2(&rand(&[n, 2, 3, 3], 4), ReluRoute).is_err());
}

#[test]
fn pool_route_is_the_max_pool_input_gradient_with_ties_and_odd_edges() {
    // Odd sizes (the last row and column are dropped) and a blank example (ties).
    let (n, r, c, h, w) = (2, 3, 2, 5, 7);
    let mut v = rand(&[n, c, h, w], 5).flatten_all().unwrap().to_vec1::<f64>().unwrap();
    v[c * h * w..].iter_mut().for_each(|p| *p = 0.5);
    let x = Var::from_tensor(&Tensor::from_vec(v, (n, c, h, w), &Device::Cpu).unwrap()).unwrap();
    let d = Var::from_tensor(&rand(&[n * r, c, h / 2, w / 2], 6)).unwrap();
    let fast = d.as_tensor().apply_op2(x.as_tensor(), PoolRoute { after_relu: false }).unwrap();
    // Signal s of example i is the input gradient of ⟨max_pool2(x_i), d_s⟩.
    for s in 0..n * r {
        let xi = x.as_tensor().narrow(0, s / r, 1).unwrap();
        let xv = Var::from_tensor(&xi).unwrap();
        let pooled = crate::max_pool2(xv.as_tensor()).unwrap();
        let gr = pooled.mul(&d.as_tensor().narrow(0, s, 1).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(max_diff(gr.get(xv.as_tensor()).unwrap(), &fast.narrow(0, s, 1).unwrap()), 0.0);
    }
    // Its adjoint (a gather) is its gradient, and finite differences agree.
    let g = rand(fast.dims(), 7);
    let grads = d
        .as_tensor()
        .apply_op2(x.as_tensor(), PoolRoute { after_relu: false })
        .unwrap()
        .mul(&g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gd = grads.get(d.as_tensor()).unwrap().clone();
    check_fd(&[d.as_tensor().clone()], &[gd], 9, &g, &|xs| {
        xs[0].apply_op2(x.as_tensor(), PoolRoute { after_relu: false }).unwrap()
    });
    assert!(d.as_tensor().apply_op2(&rand(&[n, c, h + 2, w], 8), PoolRoute { after_relu: false }).is_err());
}

#[test]
fn pool_route_after_relu_equals_the_pool_then_the_relu_signal_with_gradients() {
    let (n, r, c, h, w) = (2, 3, 2, 6, 5);
    // Pre-activations with negative windows (all-zero after the ReLU: ties at 0) and positive ones.
    let z = rand(&[n, c, h, w], 20);
    let x = z.relu().unwrap();
    let d = Var::from_tensor(&rand(&[n * r, c, h / 2, w / 2], 21)).unwrap();
    let fused = d.as_tensor().apply_op2(&x, PoolRoute { after_relu: true }).unwrap();
    let two = d.as_tensor().apply_op2(&x, PoolRoute { after_relu: false }).unwrap().apply_op2(&z, ReluRoute).unwrap();
    assert_eq!(max_diff(&fused, &two), 0.0);
    let g = rand(fused.dims(), 22);
    let grads = same_gradients(&fused, &two, &g, &[&d], 1e-15);
    let op = |xs: &[Tensor]| xs[0].apply_op2(&x, PoolRoute { after_relu: true }).unwrap();
    check_fd(&[d.as_tensor().clone()], &grads, 5, &g, &op);
}

#[test]
fn conv_signal_dense_and_sparse_equal_col2im_of_the_masked_weights_with_gradients() {
    // 3 signals: one partial block; 19: two full f64 blocks of 8 and a partial one.
    for nn in [3, 19] {
        conv_signal_case(nn);
    }
}

fn conv_signal_case(nn: usize) {
    let (o, c, oh, ow, kh, kw) = (4, 3, 5, 6, 3, 2);
    let d = Var::from_tensor(&rand(&[nn, o, oh, ow], 10)).unwrap();
    let w = Var::from_tensor(&rand(&[o, c, kh, kw], 11)).unwrap();
    let mut rng = crate::Rng::new(12);
    let m: Vec<f64> = (0..o * c * kh * kw).map(|_| f64::from(u8::from(rng.uniform() < 0.2))).collect();
    let m = Tensor::from_vec(m, (o, c, kh, kw), &Device::Cpu).unwrap();
    let g = rand(&[nn, c, oh + kh - 1, ow + kw - 1], 13);
    for (op, weight) in [
        (ConvSignal::dense(), w.as_tensor().clone()),
        (ConvSignal::sparse(&m).unwrap(), w.as_tensor().mul(&m).unwrap()),
    ] {
        let fast = d.as_tensor().apply_op2(&weight, op.clone()).unwrap();
        let slow = conv::conv_signal(d.as_tensor(), &weight).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-12);
        let grads = same_gradients(&fast, &slow, &g, &[&d, &w], 1e-11);
        // Finite differences of the op itself in (d, weight).
        let inputs = [d.as_tensor().clone(), w.as_tensor().clone()];
        let masked = op.support.is_some();
        let of = |xs: &[Tensor]| {
            let wt = if masked { xs[1].mul(&m).unwrap() } else { xs[1].clone() };
            xs[0].apply_op2(&wt, op.clone()).unwrap()
        };
        check_fd(&inputs, &grads, 17, &g, &of);
        // f32 (blocks of 16 signals) against the f64 op.
        let f = |t: &Tensor| t.to_dtype(candle_core::DType::F32).unwrap();
        let d32 = Var::from_tensor(&f(d.as_tensor())).unwrap();
        let w32 = Var::from_tensor(&f(w.as_tensor())).unwrap();
        let wt32 = if masked { w32.as_tensor().mul(&f(&m)).unwrap() } else { w32.as_tensor().clone() };
        let fast32 = d32.as_tensor().apply_op2(&wt32, op.clone()).unwrap();
        assert!(max_diff(&fast32.to_dtype(candle_core::DType::F64).unwrap(), &fast) < 1e-5);
        let g32 = fast32.mul(&f(&g)).unwrap().sum_all().unwrap().backward().unwrap();
        for (v32, want) in [&d32, &w32].into_iter().zip(&grads) {
            let got = g32.get(v32.as_tensor()).unwrap().to_dtype(candle_core::DType::F64).unwrap();
            assert!(max_diff(&got, want) < 1e-4, "f32 gradient off by {}", max_diff(&got, want));
        }
    }
    assert!(d.as_tensor().apply_op2(&rand(&[o + 1, c, kh, kw], 14), ConvSignal::dense()).is_err());
}
