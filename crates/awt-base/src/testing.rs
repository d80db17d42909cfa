//! Helpers for tests of differentiable code in the awt crates (enabled by the `test-util` feature):
//! random tensors, comparisons, and gradient checks against another formulation and against
//! central finite differences.

use candle_core::{Device, Tensor, Var};

use crate::Rng;

/// A 0/1 f64 mask `(rows, cols)` with the cases sparse kernels get wrong: an empty first row, a
/// full second row, and the other entries kept with probability `keep` (from `seed`).
pub fn edge_mask(rows: usize, cols: usize, keep: f64, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let m: Vec<f64> = (0..rows * cols)
        .map(|e| match e / cols {
            0 => 0.0,
            1 => 1.0,
            _ => f64::from(u8::from(r.uniform() < keep)),
        })
        .collect();
    Tensor::from_vec(m, (rows, cols), &Device::Cpu).unwrap()
}

/// A tensor of `shape` with standard-normal f64 entries from `seed`.
pub fn rand(shape: &[usize], seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.normal()).collect::<Vec<f64>>(), shape, &Device::Cpu).unwrap()
}

/// The largest absolute entry of `a − b` (any float dtype).
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Asserts that ⟨fast, r⟩ and ⟨slow, r⟩ have the same gradient (to `tol`) with respect to each of
/// `vars`; returns the fast side's gradients.
pub fn same_gradients(fast: &Tensor, slow: &Tensor, r: &Tensor, vars: &[&Var], tol: f64) -> Vec<Tensor> {
    let gf = fast.mul(r).unwrap().sum_all().unwrap().backward().unwrap();
    let gs = slow.mul(r).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| {
            let (a, b) = (gf.get(v.as_tensor()).unwrap(), gs.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, b) < tol);
            a.clone()
        })
        .collect()
}

/// Central finite differences of ⟨op(inputs), r⟩ at entries 0, `mid` and the last of each input
/// against the analytic gradients `grads` (f64).
pub fn check_fd(inputs: &[Tensor], grads: &[Tensor], mid: usize, r: &Tensor, op: &dyn Fn(&[Tensor]) -> Tensor) {
    for (which, g) in grads.iter().enumerate() {
        let an = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for e in [0, mid, an.len() - 1] {
            let f = |h: f64| {
                let mut xs = inputs.to_vec();
                let mut flat = xs[which].flatten_all().unwrap().to_vec1::<f64>().unwrap();
                flat[e] += h;
                xs[which] = Tensor::from_vec(flat, xs[which].shape(), &Device::Cpu).unwrap();
                op(&xs).mul(r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
            };
            let fd = (f(1e-6) - f(-1e-6)) / 2e-6;
            assert!((fd - an[e]).abs() < 1e-7 * (1.0 + fd.abs()), "input {which} entry {e}: FD {fd} vs {}", an[e]);
        }
    }
}
