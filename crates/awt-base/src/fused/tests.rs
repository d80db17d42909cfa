//! Tests of the fused CPU ops against their candle formulations, gradients included.

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
        let op = Dense { relu };
        let fast = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), op).unwrap();
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
        check_fd(&inputs, &grads, 3, &r, &|t| t[0].apply_op3(&t[1], &t[2], op).unwrap());
    }
}

#[test]
fn conv_equals_candles_convolution_with_gradients() {
    for relu in [false, true] {
        let x = Var::from_tensor(&rand(&[3, 2, 9, 8], 5)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 2, 3, 3], 6)).unwrap();
        let b = Var::from_tensor(&rand(&[4], 7)).unwrap();
        let op = Conv { relu };
        let fast = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), op).unwrap();
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
        check_fd(&inputs, &grads, 3, &r, &|t| t[0].apply_op3(&t[1], &t[2], op).unwrap());
    }
}

#[test]
fn an_untracked_input_gets_no_gradient_and_the_weights_the_same_one() {
    // A network's input is a plain tensor: the ops skip its gradient (the input-side GEMM and
    // col2im), and the weight gradients do not change.
    let x = rand(&[3, 2, 9, 8], 5);
    let w = Var::from_tensor(&rand(&[4, 2, 3, 3], 6)).unwrap();
    let b = Var::from_tensor(&rand(&[4], 7)).unwrap();
    let fast = x.apply_op3(w.as_tensor(), b.as_tensor(), Conv { relu: true }).unwrap();
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
    let fast = xf.apply_op3(wf.as_tensor(), b.as_tensor(), Dense { relu: false }).unwrap();
    let slow = xf.matmul(&wf.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
    same_gradients(&fast, &slow, &rand(&[5, 4], 4), &[&wf, &b], 1e-12);
}
