//! The structured kernel of a wide ReLU MLP approaches the analytic infinite-width NTK (Jacot et
//! al., NeurIPS 2018; the ReLU expectations of Cho & Saul, NeurIPS 2009), with its error falling as
//! 1/√width — a check against theory rather than against another implementation.
//!
//! The network is written in the NTK parameterisation with the crate's stages: weights drawn
//! N(0, 1), each linear layer's input scaled by `σ_w / √fan_in` (a [`Stage::Standardize`] with one
//! value), biases N(0, 1) (so σ_b = 1). The empirical kernel of that network — Σ over every weight
//! and bias of the products of their output gradients — then has, as the widths grow,
//!
//! ```text
//! Σ¹(x, x') = σ_w² p₁ x·x'/d + σ_b²,          Θ¹ = Σ¹,
//! Σˡ⁺¹ = σ_w² pₗ₊₁ E[φ(u) φ(v)] + σ_b²,     Σ̇ˡ⁺¹ = σ_w² pₗ₊₁ E[φ'(u) φ'(v)],   (u, v) ~ N(0, Σˡ)
//! Θˡ⁺¹ = Θˡ Σ̇ˡ⁺¹ + Σˡ⁺¹,                    Θ(x, x')[c, c'] = δ_cc' Θᴸ⁺¹(x, x'),
//! ```
//!
//! where φ = ReLU and `pₗ` is the density of a random mask on layer `l`'s weights (a random mask,
//! independent of the weights, scales what each unit sums over its fan-in by `pₗ` in the limit; the
//! first layer stays dense, its fan-in `d` does not grow). Masked layers take the kernel's masked
//! paths: the input Gram as one product (density 0.5) or gathered per unit (0.1).

use awt_base::{Rng, Stage, Weighted};
use awt_ntk::{Kind, structured};
use candle_core::{DType, Device, Tensor};
use std::f64::consts::PI;

const SIGMA_W2: f64 = 2.0;
const SIGMA_B2: f64 = 1.0;
/// Input dimension, points, classes, hidden layers.
const D: usize = 24;
const POINTS: usize = 5;
const CLASSES: usize = 3;
const HIDDEN: usize = 2;

fn normal(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.normal()).collect::<Vec<f64>>(), shape, &Device::Cpu).unwrap()
}

fn bernoulli(rng: &mut Rng, shape: &[usize], keep: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let m: Vec<f64> = (0..n).map(|_| if rng.uniform() < keep { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(m, shape, &Device::Cpu).unwrap()
}

/// The `HIDDEN`-layer ReLU MLP of the given width in the NTK parameterisation; every layer after
/// the first masked at density `keep` (no mask at 1).
fn ntk_mlp(width: usize, keep: f64, seed: u64) -> Vec<Stage> {
    let mut rng = Rng::new(seed);
    let scale = |fan_in: usize| Stage::Standardize { mean: vec![0.0], std: vec![(fan_in as f64 / SIGMA_W2).sqrt()] };
    let mut stages = Vec::new();
    let mut fan_in = D;
    for l in 0..=HIDDEN {
        let out = if l == HIDDEN { CLASSES } else { width };
        let mask = (l > 0 && keep < 1.0).then(|| bernoulli(&mut rng, &[out, fan_in], keep));
        stages.push(scale(fan_in));
        stages.push(Stage::Linear(Weighted {
            name: format!("fc{}", l + 1),
            weight: normal(&mut rng, &[out, fan_in]),
            bias: normal(&mut rng, &[out]),
            mask,
        }));
        if l < HIDDEN {
            stages.push(Stage::Relu);
        }
        fan_in = out;
    }
    stages
}

/// `E[φ(u) φ(v)]` and `E[φ'(u) φ'(v)]` for ReLU φ and `(u, v)` centred Gaussian with variances
/// `s11`, `s22` and covariance `s12` (the arc-cosine kernels of degree 1 and 0).
fn relu_moments(s11: f64, s12: f64, s22: f64) -> (f64, f64) {
    let norm = (s11 * s22).sqrt();
    let cos = (s12 / norm).clamp(-1.0, 1.0);
    let theta = cos.acos();
    (norm / (2.0 * PI) * (theta.sin() + (PI - theta) * cos), (PI - theta) / (2.0 * PI))
}

/// The infinite-width kernel `(points·classes)²` of the inputs `x: (points, D)` (rows `i·k + c`)
/// for masks of density `keep`. Without `bias_terms` the biases' own terms are left out of Θ (not
/// of Σ: the forward pass keeps them), a kernel that forgot the biases' gradients — one of the
/// wrong limits the check must tell apart.
fn analytic(x: &[Vec<f64>], keep: f64, bias_terms: bool) -> Vec<f64> {
    let bias_term = if bias_terms { SIGMA_B2 } else { 0.0 };
    let n = x.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    let mut sigma: Vec<f64> =
        (0..n * n).map(|ab| SIGMA_W2 * dot(&x[ab / n], &x[ab % n]) / D as f64 + SIGMA_B2).collect();
    let mut theta: Vec<f64> = sigma.iter().map(|s| s - SIGMA_B2 + bias_term).collect();
    // Layers 2..=HIDDEN + 1, each masked at `keep`.
    for _ in 1..=HIDDEN {
        let p = keep;
        let mut next = vec![0.0; n * n];
        for a in 0..n {
            for b in 0..n {
                let (k1, k0) = relu_moments(sigma[a * n + a], sigma[a * n + b], sigma[b * n + b]);
                next[a * n + b] = SIGMA_W2 * p * k1 + SIGMA_B2;
                theta[a * n + b] = theta[a * n + b] * SIGMA_W2 * p * k0 + next[a * n + b] - SIGMA_B2 + bias_term;
            }
        }
        sigma = next;
    }
    let k = CLASSES;
    let mut full = vec![0.0; n * k * n * k];
    for a in 0..n {
        for b in 0..n {
            for c in 0..k {
                full[(a * k + c) * n * k + b * k + c] = theta[a * n + b];
            }
        }
    }
    full
}

/// ‖Θ_empirical − Θ_limit‖_F / ‖Θ_limit‖_F.
fn rel_frobenius(emp: &[f64], lim: &[f64]) -> f64 {
    let diff: f64 = emp.iter().zip(lim).map(|(a, b)| (a - b).powi(2)).sum();
    (diff / lim.iter().map(|b| b * b).sum::<f64>()).sqrt()
}

/// Least-squares slope of `ln y` against `ln x`.
fn log_slope(xs: &[f64], ys: &[f64]) -> f64 {
    let (lx, ly): (Vec<f64>, Vec<f64>) = xs.iter().zip(ys).map(|(x, y)| (x.ln(), y.ln())).unzip();
    let (mx, my) = (lx.iter().sum::<f64>() / lx.len() as f64, ly.iter().sum::<f64>() / ly.len() as f64);
    let cov: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    cov / lx.iter().map(|a| (a - mx).powi(2)).sum::<f64>()
}

const WIDTHS: [usize; 4] = [64, 256, 1024, 4096];
const SEEDS: u64 = 3;

/// Per width, the root-mean-square over seeds of the relative error of the kernels of nets masked
/// at `keep` against each of `limits`.
fn errors(keep: f64, limits: &[Vec<f64>], x: &Tensor) -> Vec<Vec<f64>> {
    WIDTHS
        .iter()
        .map(|&w| {
            let mut ms = vec![0.0; limits.len()];
            for s in 0..SEEDS {
                let stages = ntk_mlp(w, keep, 100 * w as u64 + s);
                let k = structured(&stages, x, x, Kind::Full).unwrap();
                assert_eq!(k.dtype(), DType::F64);
                let emp = k.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                for (m, lim) in ms.iter_mut().zip(limits) {
                    *m += rel_frobenius(&emp, lim).powi(2) / SEEDS as f64;
                }
            }
            ms.iter().map(|m| m.sqrt()).collect()
        })
        .collect()
}

/// Dense and masked (the masked Gram as one product at 0.5, gathered per unit at 0.1): the error
/// against the limit falls as a Monte-Carlo error over `width` units does (slope −½ in log–log),
/// and against a wrong limit it stops falling — the limit of another mask density, or one
/// without the biases' terms — so the check can fail. (It resolves what differs from the limit by
/// more than its Monte-Carlo error at the widest net, ≈ 5 %; exact agreement is the
/// neural-tangents and autograd tests' job.)
#[test]
#[allow(clippy::print_stderr)] // the measured errors, for `--nocapture`
fn wide_relu_mlp_kernels_approach_the_infinite_width_ntk_as_one_over_root_width() {
    let mut rng = Rng::new(11);
    let x: Vec<Vec<f64>> = (0..POINTS).map(|_| (0..D).map(|_| rng.normal()).collect()).collect();
    let xt = Tensor::from_vec(x.concat(), (POINTS, D), &Device::Cpu).unwrap();
    let widths: Vec<f64> = WIDTHS.iter().map(|&w| w as f64).collect();
    for (keep, wrong) in
        [(1.0, analytic(&x, 1.0, false)), (0.5, analytic(&x, 1.0, true)), (0.1, analytic(&x, 0.5, true))]
    {
        let e = errors(keep, &[analytic(&x, keep, true), wrong], &xt);
        let (right, wrong): (Vec<f64>, Vec<f64>) = e.iter().map(|v| (v[0], v[1])).unzip();
        let (slope, wrong_slope) = (log_slope(&widths, &right), log_slope(&widths, &wrong));
        eprintln!(
            "keep {keep}: relative errors {right:.4?} at widths {WIDTHS:?}, slope {slope:.3}; \
             against the wrong limit {wrong:.4?}, slope {wrong_slope:.3}"
        );
        assert!((-0.75..=-0.3).contains(&slope), "keep {keep}: errors {right:?} fall with slope {slope:.3}, not ≈ −½");
        assert!(right[3] < 0.1, "keep {keep}: {right:?} at width {} still far from the limit", WIDTHS[3]);
        assert!(
            wrong_slope > -0.2 && wrong[3] > 2.0 * right[3],
            "keep {keep}: the wrong limit is approached too ({wrong:?}, slope {wrong_slope:.3})"
        );
    }
}
