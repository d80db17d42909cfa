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

/// One output's terms for telling a chain from a split sum: big, 1, …, 1, −big (`k` terms, big =
/// 2²⁴). A chain in depth order loses every 1 added to big (big + 1 = big in f32) and ends at
/// big − big = 0; a split into SIMD lanes or k-blocks keeps some of the ones.
pub fn cancelling_row(k: usize) -> Vec<f32> {
    let big = 16_777_216.0f32;
    (0..k)
        .map(|t| {
            if t == 0 {
                big
            } else if t + 1 == k {
                -big
            } else {
                1.0
            }
        })
        .collect()
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

/// The peer fixtures' parameter formula (`benches/peers/formulas.py` computes the same): entry `k`
/// (flat, in PyTorch's layout) of parameter `j` (numbered in forward order, weight before bias):
/// `sqrt(3 / fan_in) · sin(1 + 0.37 k + 1.3 j)` for a weight, `0.1 · sin(…)` for a bias.
pub fn formula_values(j: usize, len: usize, fan_in: usize, bias: bool) -> Vec<f64> {
    let scale = if bias { 0.1 } else { (3.0 / fan_in as f64).sqrt() };
    (0..len).map(|k| scale * (1.0 + 0.37 * k as f64 + 1.3 * j as f64).sin()).collect()
}

/// The peer fixtures' mask formula of weight `j`: entry `k` kept (1.0) where
/// `(2654435761 k + 40503 j + 12345) mod 2³²` < 1288490188 (about 30 %), else 0.0.
pub fn formula_mask(j: usize, len: usize) -> Vec<f64> {
    (0..len as u64)
        .map(
            |k| if (k * 2_654_435_761 + 40_503 * j as u64 + 12_345) % (1u64 << 32) < 1_288_490_188 { 1.0 } else { 0.0 },
        )
        .collect()
}

/// The peer fixtures' images and labels: `n` images of 784 bytes, pixel `e` of image `i` being
/// `(37 e + 101 i + 13) mod 256` (read as byte / 255 in f32, as awt's data sets are), and label
/// `(3 + 7 i) mod 10`.
pub fn formula_images(n: usize) -> (Vec<u8>, Vec<u8>) {
    let images = (0..n).flat_map(|i| (0..784).map(move |e| ((37 * e + 101 * i + 13) % 256) as u8)).collect();
    let labels = (0..n).map(|i| ((3 + 7 * i) % 10) as u8).collect();
    (images, labels)
}
