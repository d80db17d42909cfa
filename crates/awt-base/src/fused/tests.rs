//! Tests of the fused CPU ops against their candle formulations, gradients included.
#![allow(clippy::disallowed_methods)] // candle's matmul and conv2d are the reference here

use super::*;
use crate::testing::{check_fd, max_diff, rand, same_gradients};
use candle_core::Var;

fn rectified(t: Tensor, relu: bool) -> Tensor {
    if relu { t.relu().unwrap() } else { t }
}

#[test]
fn dense_equals_matmul_plus_bias_with_gradients() {
    for relu in [false, true] {
        let x = Var::from_tensor(&rand(&[5, 7], 1)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 7], 2)).unwrap();
        let b = Var::from_tensor(&rand(&[4], 3)).unwrap();
        let op = Dense { relu, mask: None };
        let fast = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), op.clone()).unwrap();
        let slow = rectified(
            x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap(),
            relu,
        );
        assert!(max_diff(&fast, &slow) < 1e-13);
        if relu {
            assert!(fast.flatten_all().unwrap().to_vec1::<f64>().unwrap().contains(&0.0), "no unit rectified");
        }
        let r = rand(&[5, 4], 4);
        let grads = same_gradients(&fast, &slow, &r, &[&x, &w, &b], 1e-12);
        let inputs = [x.as_tensor().clone(), w.as_tensor().clone(), b.as_tensor().clone()];
        check_fd(&inputs, &grads, 3, &r, &|t| t[0].apply_op3(&t[1], &t[2], op.clone()).unwrap());
    }
}

#[test]
fn conv_equals_candles_convolution_with_gradients() {
    for relu in [false, true] {
        let x = Var::from_tensor(&rand(&[3, 2, 9, 8], 5)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 2, 3, 3], 6)).unwrap();
        let b = Var::from_tensor(&rand(&[4], 7)).unwrap();
        let op = Conv { relu, mask: None };
        let fast = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), op.clone()).unwrap();
        let slow = x
            .as_tensor()
            .conv2d(w.as_tensor(), 0, 1, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap())
            .unwrap();
        let slow = rectified(slow, relu);
        assert!(max_diff(&fast, &slow) < 1e-12);
        let r = rand(fast.dims(), 8);
        let grads = same_gradients(&fast, &slow, &r, &[&x, &w, &b], 1e-11);
        let inputs = [x.as_tensor().clone(), w.as_tensor().clone(), b.as_tensor().clone()];
        check_fd(&inputs, &grads, 3, &r, &|t| t[0].apply_op3(&t[1], &t[2], op.clone()).unwrap());
    }
}

#[test]
fn an_untracked_input_gets_no_gradient_and_the_weights_the_same_one() {
    // A network's input is a plain tensor: the ops skip its gradient (the input-side GEMM and
    // col2im), and the weight gradients do not change.
    let x = rand(&[3, 2, 9, 8], 5);
    let w = Var::from_tensor(&rand(&[4, 2, 3, 3], 6)).unwrap();
    let b = Var::from_tensor(&rand(&[4], 7)).unwrap();
    let fast = x.apply_op3(w.as_tensor(), b.as_tensor(), Conv { relu: true, mask: None }).unwrap();
    let slow = x
        .conv2d(w.as_tensor(), 0, 1, 1, 1)
        .unwrap()
        .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap())
        .unwrap()
        .relu()
        .unwrap();
    let r = rand(fast.dims(), 8);
    let g = fast.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    same_gradients(&fast, &slow, &r, &[&w, &b], 1e-11);
    let xf = rand(&[5, 7], 1);
    let wf = Var::from_tensor(&rand(&[4, 7], 2)).unwrap();
    let fast = xf.apply_op3(wf.as_tensor(), b.as_tensor(), Dense { relu: false, mask: None }).unwrap();
    let slow = xf.matmul(&wf.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
    same_gradients(&fast, &slow, &rand(&[5, 4], 4), &[&wf, &b], 1e-12);
}

/// A 0/1 mask of `shape` keeping about `keep` of it (seeded), as an f64 tensor and its values.
fn sparse_mask(shape: &[usize], keep: f64, seed: u64) -> (Tensor, Vec<f64>) {
    let mut r = crate::Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| f64::from(u8::from(r.uniform() < keep))).collect();
    (Tensor::from_vec(v.clone(), shape, &candle_core::Device::Cpu).unwrap(), v)
}

#[test]
fn masked_ops_over_kept_weights_equal_the_dense_ones_with_gradients() {
    // At a kept fraction below `sparse::SPARSE_MAX` the ops given the mask run over the kept
    // weights (checked to be the case); the output and the gradients with respect to the input,
    // the unmasked weight (through `W ⊙ M`) and the bias equal the dense op's on `W ⊙ M` and
    // candle's, and finite differences.
    for relu in [false, true] {
        let x = Var::from_tensor(&rand(&[3, 3, 9, 8], 11)).unwrap();
        let w = Var::from_tensor(&rand(&[8, 3, 3, 3], 12)).unwrap();
        let b = Var::from_tensor(&rand(&[8], 13)).unwrap();
        let (m, mv) = sparse_mask(&[8, 3, 3, 3], 0.08, 14);
        let dims = crate::sparse::ConvDims { o: 8, c: 3, h: 9, w: 8, kh: 3, kw: 3 };
        let wv = w.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(crate::sparse::SparseConv::new(&wv, &mv, dims).is_some(), "the sparse path is taken");
        let op = Conv { relu, mask: Some(m.clone()) };
        let weff = w.as_tensor().mul(&m).unwrap();
        let fast = x.as_tensor().apply_op3(&weff, b.as_tensor(), op.clone()).unwrap();
        let dense = x.as_tensor().apply_op3(&weff, b.as_tensor(), Conv { relu, mask: None }).unwrap();
        let slow = rectified(
            x.as_tensor()
                .conv2d(&weff, 0, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, 8, 1, 1)).unwrap())
                .unwrap(),
            relu,
        );
        assert!(max_diff(&fast, &slow) < 1e-12 && max_diff(&fast, &dense) < 1e-12);
        let r = rand(fast.dims(), 15);
        same_gradients(&fast, &dense, &r, &[&x, &w, &b], 1e-11);
        let grads = same_gradients(&fast, &slow, &r, &[&x, &w, &b], 1e-11);
        let inputs = [x.as_tensor().clone(), w.as_tensor().clone(), b.as_tensor().clone()];
        check_fd(&inputs, &grads, 3, &r, &|t| t[0].apply_op3(&t[1].mul(&m).unwrap(), &t[2], op.clone()).unwrap());

        let x = Var::from_tensor(&rand(&[5, 20], 16)).unwrap();
        let w = Var::from_tensor(&rand(&[12, 20], 17)).unwrap();
        let b = Var::from_tensor(&rand(&[12], 18)).unwrap();
        let (m, mv) = sparse_mask(&[12, 20], 0.08, 19);
        let wv = w.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(crate::sparse::SparseLinear::new(&wv, &mv, 12, 20).is_some(), "the sparse path is taken");
        let op = Dense { relu, mask: Some(m.clone()) };
        let weff = w.as_tensor().mul(&m).unwrap();
        let fast = x.as_tensor().apply_op3(&weff, b.as_tensor(), op.clone()).unwrap();
        let slow =
            rectified(x.as_tensor().matmul(&weff.t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap(), relu);
        assert!(max_diff(&fast, &slow) < 1e-13);
        let r = rand(&[5, 12], 20);
        let grads = same_gradients(&fast, &slow, &r, &[&x, &w, &b], 1e-12);
        let inputs = [x.as_tensor().clone(), w.as_tensor().clone(), b.as_tensor().clone()];
        check_fd(&inputs, &grads, 3, &r, &|t| t[0].apply_op3(&t[1].mul(&m).unwrap(), &t[2], op.clone()).unwrap());
    }
    // An untracked input: no input gradient, the same weight gradient.
    let x = rand(&[3, 3, 9, 8], 21);
    let w = Var::from_tensor(&rand(&[8, 3, 3, 3], 22)).unwrap();
    let (m, _) = sparse_mask(&[8, 3, 3, 3], 0.08, 23);
    let b = Var::from_tensor(&rand(&[8], 24)).unwrap();
    let weff = w.as_tensor().mul(&m).unwrap();
    let fast = x.apply_op3(&weff, b.as_tensor(), Conv { relu: true, mask: Some(m.clone()) }).unwrap();
    let dense = x.apply_op3(&weff, b.as_tensor(), Conv { relu: true, mask: None }).unwrap();
    let r = rand(fast.dims(), 25);
    assert!(fast.mul(&r).unwrap().sum_all().unwrap().backward().unwrap().get(&x).is_none());
    same_gradients(&fast, &dense, &r, &[&w, &b], 1e-11);
}
