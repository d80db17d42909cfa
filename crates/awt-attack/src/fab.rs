//! FAB-T, ℓ∞ (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast
//! adaptive boundary attack"), as AutoAttack's standard version runs it: for each of the `targets`
//! classes ranked highest after the predicted one, from the clean input, `steps` iterations of
//!
//! ```text
//! linearise the boundary between label y and target t at x₁:  w = ∇(z_t − z_y)(x₁), b = w·x₁ − (z_t − z_y)(x₁)
//! d₁ = smallest ℓ∞ step from x₁ onto {w·x = b} ∩ [0,1]ⁿ,   d₂ = the same from the clean x₀
//! α = min(‖d₁‖ / (‖d₁‖ + ‖d₂‖), α_max)
//! x₁ ← clip((x₁ + η d₁)(1 − α) + (x₀ + η d₂) α, 0, 1)
//! if x₁ is misclassified: keep it if it is the closest to x₀ so far; x₁ ← x₀ + β (x₁ − x₀)
//! ```
//!
//! with α_max = 0.1, η = 1.05, β = 0.9. FAB looks for the *closest* adversarial example; a point is
//! broken when the closest one found lies within ε. The projection is exact: sort the coordinates by
//! how far the box lets them move and find the radius where the hyperplane is reached.

use awt_base::Classifier;
use candle_core::{D, DType, Tensor};
use rayon::prelude::*;

use crate::core::{Attack, Outcome};
use crate::error::{AttackError, finite_logits};
use crate::ranking::{OwnTargets, Standing, logit_gap};

/// FAB-T (ℓ∞) settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FabTargeted {
    /// The ε within which the closest adversarial example must lie.
    pub eps: f64,
    /// Iterations per target (100 in AutoAttack).
    pub steps: usize,
    /// How many target classes, in the order of the clean logits after the top one (9).
    pub targets: usize,
}

const ALPHA_MAX: f64 = 0.1;
const ETA: f64 = 1.05;
const BETA: f64 = 0.9;

impl FabTargeted {
    /// AutoAttack's standard settings: 100 iterations, 9 targets (one run each, from the clean input).
    pub fn standard(eps: f64) -> FabTargeted {
        FabTargeted { eps, steps: 100, targets: 9 }
    }
}

/// The smallest-ℓ∞ step `d` with `w·(t + d) = b` and `t + d ∈ [0, 1]ⁿ`. When the box cannot reach
/// the hyperplane, the smallest-ℓ∞ step ignoring the box (the caller clips).
pub(crate) fn project_linf(t: &[f64], w: &[f64], b: f64) -> Vec<f64> {
    let c = b - t.iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
    let mut d = vec![0.0; t.len()];
    if c == 0.0 {
        return d;
    }
    // Coordinate i moves in direction dir_i = sign(w_i)·sign(c), by at most cap_i inside the box;
    // at radius λ the reachable change of w·x is S(λ) = Σ |w_i| min(λ, cap_i), increasing in λ.
    let need = c.abs();
    let mut moves: Vec<(f64, f64, usize)> = Vec::new(); // (cap, |w|, index)
    for i in 0..t.len() {
        if w[i] != 0.0 {
            let up = (w[i] > 0.0) == (c > 0.0);
            let cap = if up { 1.0 - t[i] } else { t[i] }.max(0.0);
            moves.push((cap, w[i].abs(), i));
        }
    }
    let dir = |i: usize| if (w[i] > 0.0) == (c > 0.0) { 1.0 } else { -1.0 };
    let reach: f64 = moves.iter().map(|(cap, aw, _)| cap * aw).sum();
    let wsum: f64 = moves.iter().map(|m| m.1).sum();
    if wsum == 0.0 {
        return d;
    }
    if reach < need {
        let lambda = need / wsum;
        for &(_, _, i) in &moves {
            d[i] = dir(i) * lambda;
        }
        return d;
    }
    let lambda = radius(&moves, need, wsum);
    for &(cap, _, i) in &moves {
        d[i] = dir(i) * lambda.min(cap);
    }
    d
}

/// The radius λ at which `S(λ) = Σ |w_i| min(λ, cap_i)` first reaches `need`, walking the moves by
/// increasing cap (0 when rounding keeps the walk short of it). The walk reads the moves in the
/// order a stable sort by cap gives (they come by index, so `(cap, index)` is that order), sums in
/// that order, but sorts only what it reads: the zero caps (an image's background, often half the
/// moves) need no sort, as they come by index already (−0 before +0, as `total_cmp` has them); of
/// the others, the smallest are selected a block at a time (`select_nth_unstable`, linear) and
/// only each block is sorted, until the walk stops.
fn radius(moves: &[(f64, f64, usize)], need: f64, wsum: f64) -> f64 {
    let (mut fixed, mut rest) = (0.0, wsum);
    let mut step = |&(cap, aw, _): &(f64, f64, usize)| {
        if fixed + rest * cap >= need {
            return Some((need - fixed) / rest);
        }
        fixed += aw * cap;
        rest -= aw;
        None
    };
    for zero in [(-0.0f64).to_bits(), 0.0f64.to_bits()] {
        if let Some(l) = moves.iter().filter(|m| m.0.to_bits() == zero).find_map(&mut step) {
            return l;
        }
    }
    let mut others: Vec<_> = moves.iter().filter(|m| m.0 != 0.0).copied().collect();
    let order = |a: &(f64, f64, usize), b: &(f64, f64, usize)| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2));
    let (mut start, mut block) = (0, 32);
    while start < others.len() {
        let tail = &mut others[start..];
        let m = block.min(tail.len());
        if m < tail.len() {
            tail.select_nth_unstable_by(m - 1, order);
        }
        tail[..m].sort_unstable_by(order);
        if let Some(l) = tail[..m].iter().find_map(&mut step) {
            return l;
        }
        start += m;
        block *= 2;
    }
    0.0
}

fn linf(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, a| m.max(a.abs()))
}

impl FabTargeted {
    /// One FAB run toward targets `t` on `x0` (labels `y`): per example, the closest adversarial
    /// example found and its ℓ∞ distance (∞ when none).
    fn run(
        &self,
        model: &dyn Classifier,
        x0: &Tensor,
        y: &Tensor,
        t: &Tensor,
    ) -> Result<(Vec<Vec<f64>>, Vec<f64>), AttackError> {
        let (n, shape, dtype) = (x0.dim(0)?, x0.shape().clone(), x0.dtype());
        let orig: Vec<Vec<f64>> = x0.reshape((n, ()))?.to_dtype(DType::F64)?.to_vec2()?;
        let mut x1 = orig.clone();
        let mut best = orig.clone();
        let mut best_norm = vec![f64::INFINITY; n];
        let yv = y.to_vec1::<u32>()?;
        let to_tensor = |rows: &[Vec<f64>]| -> Result<Tensor, AttackError> {
            let flat: Vec<f64> = rows.iter().flatten().copied().collect();
            Ok(Tensor::from_vec(flat, shape.clone(), x0.device())?.to_dtype(dtype)?)
        };
        // A point the model already misclassifies is its own closest adversarial example.
        let pred0 = model.predict(x0)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for i in 0..n {
            if pred0[i] != yv[i] {
                best_norm[i] = 0.0;
            }
        }
        for _ in 0..self.steps {
            let (logits, gap, grad) = model.loss_and_input_grad(&to_tensor(&x1)?, &|z: &Tensor| logit_gap(z, t, y))?;
            finite_logits(&logits)?;
            let gap = gap.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let grad: Vec<Vec<f64>> = grad.reshape((n, ()))?.to_dtype(DType::F64)?.to_vec2()?;
            // Each example's step alone (two projections of its 784 moves): the examples split over
            // the threads, each computed as on one.
            let per = n.div_ceil(awt_base::threads().max(1)).max(1);
            x1.par_iter_mut().enumerate().with_min_len(per).for_each(|(i, x1)| {
                if best_norm[i] <= 0.0 {
                    return;
                }
                let w = &grad[i];
                let b = w.iter().zip(x1.iter()).map(|(a, c)| a * c).sum::<f64>() - gap[i];
                let d1 = project_linf(x1, w, b);
                let d2 = project_linf(&orig[i], w, b);
                let (a1, a2) = (linf(&d1).max(1e-8), linf(&d2).max(1e-8));
                let alpha = (a1 / (a1 + a2)).clamp(0.0, ALPHA_MAX);
                for j in 0..x1.len() {
                    let v = (x1[j] + ETA * d1[j]) * (1.0 - alpha) + (orig[i][j] + ETA * d2[j]) * alpha;
                    x1[j] = v.clamp(0.0, 1.0);
                }
            });
            let pred = model.predict(&to_tensor(&x1)?)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for i in 0..n {
                if best_norm[i] > 0.0 && pred[i] != yv[i] {
                    let dist = x1[i].iter().zip(&orig[i]).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                    if dist < best_norm[i] {
                        best_norm[i] = dist;
                        best[i].clone_from(&x1[i]);
                    }
                    for j in 0..x1[i].len() {
                        x1[i][j] = orig[i][j] + (x1[i][j] - orig[i][j]) * BETA;
                    }
                }
            }
        }
        Ok((best, best_norm))
    }
}

impl Attack for FabTargeted {
    fn name(&self) -> String {
        "fab-t".into()
    }

    fn perturb(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
    ) -> Result<Outcome, AttackError> {
        let ranked =
            OwnTargets { name: "FAB-T", targets: self.targets, min_classes: 2, needs: "1 ≤ targets < classes" }
                .rank(model, x, y, target, ids, self.eps)?;
        let mut standing = Standing::new(x)?;
        for rank in 1..=self.targets {
            let Some((sub, t)) = standing.alive_toward(x, y, ids, &ranked, rank)? else { break };
            let (best, norm) = self.run(model, &sub.x, &sub.y, &t)?;
            // Broken only within ε (FAB's closest example may lie farther out); the example is
            // projected onto the ball so that rounding never leaves it.
            let fooled: Vec<bool> = norm.iter().map(|&d| d <= self.eps).collect();
            let flat: Vec<f64> = best.into_iter().flatten().collect();
            let adv = Tensor::from_vec(flat, sub.x.shape().clone(), x.device())?.to_dtype(x.dtype())?;
            let adv = adv.clamp(&(&sub.x - self.eps)?, &(&sub.x + self.eps)?)?.clamp(0.0, 1.0)?;
            let loss: Vec<f32> = norm.iter().map(|&d| -(d as f32)).collect();
            standing.absorb(&sub.rows, &fooled, &adv, &loss)?;
        }
        standing.outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::project_linf;
    use awt_base::Rng;

    /// S(λ) = Σ |w_i| min(λ, cap_i) for the step directions of `project_linf`.
    fn reach(t: &[f64], w: &[f64], c: f64, lambda: f64) -> f64 {
        t.iter()
            .zip(w)
            .map(|(&ti, &wi)| {
                let up = (wi > 0.0) == (c > 0.0);
                wi.abs() * lambda.min(if up { 1.0 - ti } else { ti })
            })
            .sum()
    }

    /// `radius` walks the moves as the full stable sort by cap did (the code before it), bit for
    /// bit, on images' caps: many exact ties (0, −0 and 1 at the background) and up to 784 moves.
    #[test]
    fn the_partial_walk_gives_the_full_sorts_radius_exactly() {
        let full = |moves: &[(f64, f64, usize)], need: f64, wsum: f64| {
            let mut moves = moves.to_vec();
            moves.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (mut fixed, mut rest) = (0.0, wsum);
            for &(cap, aw, _) in &moves {
                if fixed + rest * cap >= need {
                    return (need - fixed) / rest;
                }
                fixed += aw * cap;
                rest -= aw;
            }
            0.0
        };
        let mut r = Rng::new(5);
        let mut beyond_one_block = 0;
        for case in 0..400 {
            let n = [5, 70, 300, 784][case % 4];
            let moves: Vec<(f64, f64, usize)> = (0..n)
                .map(|i| {
                    let u = r.uniform();
                    let cap = if u < 0.05 {
                        -0.0
                    } else if u < 0.4 {
                        0.0
                    } else if u < 0.55 {
                        1.0
                    } else {
                        (r.uniform() * 255.0).round() / 255.0
                    };
                    (cap, r.normal().abs() + 1e-3, i)
                })
                .collect();
            let wsum: f64 = moves.iter().map(|m| m.1).sum();
            let reach: f64 = moves.iter().map(|m| m.0 * m.1).sum();
            let need = reach * r.uniform();
            let want = full(&moves, need, wsum);
            let got = super::radius(&moves, need, wsum);
            assert_eq!(got.to_bits(), want.to_bits(), "case {case}: {got} against {want}");
            beyond_one_block += usize::from(moves.iter().filter(|m| m.0 < want).count() > 64);
        }
        assert!(beyond_one_block > 50, "only {beyond_one_block} cases walked past the first block");
    }

    #[test]
    fn linf_projection_is_feasible_and_minimal() {
        let mut r = Rng::new(3);
        for case in 0..300 {
            let n = 1 + (case % 13);
            let t: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
            let w: Vec<f64> = (0..n).map(|_| if r.uniform() < 0.15 { 0.0 } else { r.normal() }).collect();
            let b = (r.uniform() - 0.5) * 2.0;
            let c = b - t.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
            let d = project_linf(&t, &w, b);
            let lam = d.iter().fold(0.0f64, |m, a| m.max(a.abs()));
            if w.iter().all(|a| *a == 0.0) {
                // No direction changes w·x: no step.
                assert!(d.iter().all(|e| *e == 0.0), "case {case}");
            } else if reach(&t, &w, c, f64::INFINITY) >= c.abs() {
                // On the hyperplane, inside the box, and no smaller radius reaches it.
                let hit: f64 = t.iter().zip(&w).zip(&d).map(|((a, b), e)| (a + e) * b).sum();
                assert!((hit - b).abs() < 1e-9 * (1.0 + b.abs()), "case {case}: w·x = {hit}, b = {b}");
                assert!(t.iter().zip(&d).all(|(a, e)| (-1e-12..=1.0 + 1e-12).contains(&(a + e))), "case {case}");
                assert!(
                    reach(&t, &w, c, lam * (1.0 - 1e-9)) < c.abs() + 1e-12,
                    "case {case}: radius {lam} not minimal"
                );
            } else {
                // The box cannot reach it: the unconstrained smallest-ℓ∞ step, sign(w)·|c|/‖w‖₁.
                let l1: f64 = w.iter().map(|a| a.abs()).sum();
                let hit: f64 = w.iter().zip(&d).map(|(a, e)| a * e).sum();
                let want = c.abs() / l1;
                assert!((hit - c).abs() < 1e-9 * (1.0 + c.abs()), "case {case}: w·d = {hit}, c = {c}");
                assert!((lam - want).abs() < 1e-12 * (1.0 + want), "case {case}: radius {lam}, want {want}");
            }
        }
    }
}
