//! Worst-case robust evaluation of a batch, with the sanity checks that catch a broken evaluation
//! (Carlini et al. 2019, "On evaluating adversarial robustness"; AutoAttack's own warnings).

use awt_base::{Classifier, Rng};
use candle_core::{D, Tensor};

use crate::core::{Attack, input_gradient};
use crate::error::AttackError;
use crate::loss::LossKind;
use crate::pgd::{Norm, Pgd, random_start};

/// Per-example results of evaluating one batch.
#[derive(Clone, Debug, Default)]
pub struct BatchEval {
    /// Clean prediction correct.
    pub clean: Vec<bool>,
    /// `robust_after[j][i]`: example i still correctly classified after attacks 0..=j (each attack
    /// runs only on the points that survived the previous ones, as in AutoAttack).
    pub robust_after: Vec<Vec<bool>>,
    /// Robust to every attack and to the uniform-noise check (the last entry of `robust_after`
    /// less the points noise broke, or `clean` with no attack).
    pub robust: Vec<bool>,
    /// Sanity checks.
    pub warnings: Warnings,
}

/// Counts behind the evaluation warnings; [`Warnings::messages`] turns them into words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings {
    /// Clean-correct points whose input gradient is exactly zero everywhere (gradient masking).
    pub zero_gradient: usize,
    /// Clean-correct points examined for zero gradients.
    pub gradient_checked: usize,
    /// Points where an ε = 0 attack disagreed with clean accuracy (must be 0).
    pub eps0_mismatch: usize,
    /// Points that uniform noise in the ball broke although the attacks did not.
    pub noise_beats_attack: usize,
    /// Points a gradient-free attack (Square) broke after every gradient attack before it missed them.
    pub gradient_free_only: usize,
    /// Points evaluated (the denominator of the gradient-free check).
    pub evaluated: usize,
}

impl Warnings {
    /// Adds another batch's counts.
    pub fn merge(&mut self, o: &Warnings) {
        self.zero_gradient += o.zero_gradient;
        self.gradient_checked += o.gradient_checked;
        self.eps0_mismatch += o.eps0_mismatch;
        self.noise_beats_attack += o.noise_beats_attack;
        self.gradient_free_only += o.gradient_free_only;
        self.evaluated += o.evaluated;
    }

    /// True when any sign of gradient masking was seen: a gradient-free attack broke more than 1 % of
    /// the evaluated points that every gradient attack had missed, uniform noise broke a point the
    /// attacks missed, or a correctly classified point has an all-zero input gradient. Every
    /// warning of [`Warnings::messages`] that names gradient masking sets it.
    pub fn gradient_masking_suspected(&self) -> bool {
        self.gradient_free_beats_gradients() || self.zero_gradient > 0 || self.noise_beats_attack > 0
    }

    /// A gradient-free attack broke more than 1 % of the evaluated points that every gradient attack
    /// had missed.
    fn gradient_free_beats_gradients(&self) -> bool {
        self.gradient_free_only as f64 > 0.01 * self.evaluated as f64
    }

    /// Human-readable warnings (empty when the evaluation looks sound).
    pub fn messages(&self) -> Vec<String> {
        let mut m = Vec::new();
        if self.zero_gradient > 0 {
            m.push(format!(
                "{} of {} correctly classified points have an all-zero input gradient: gradient-based attacks cannot move them (gradient masking?)",
                self.zero_gradient, self.gradient_checked
            ));
        }
        if self.eps0_mismatch > 0 {
            m.push(format!(
                "{} points changed under an ε = 0 attack: the evaluation pipeline is broken",
                self.eps0_mismatch
            ));
        }
        // Only Square's own finding: noise and zero gradients have their own messages (this one,
        // printed for them too, said "Square broke 0 of N points").
        if self.gradient_free_beats_gradients() {
            m.push(format!(
                "GRADIENT MASKING: the gradient-free Square attack broke {} of {} points ({:.1}%) that every gradient attack missed; gradient-based robust accuracy overstates robustness",
                self.gradient_free_only,
                self.evaluated,
                100.0 * self.gradient_free_only as f64 / self.evaluated.max(1) as f64
            ));
        }
        if self.noise_beats_attack > 0 {
            m.push(format!(
                "uniform noise in the ε-ball broke {} points that the attacks did not: the attacks are too weak (gradient masking?)",
                self.noise_beats_attack
            ));
        }
        m
    }
}

/// Settings of the sanity checks run beside the attacks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Checks {
    /// ℓ∞ radius of the uniform-noise check (usually the attack's ε).
    pub noise_eps: f64,
    /// Noise samples per surviving point; 0 turns the noise check off.
    pub noise_samples: usize,
    /// Seed of the noise and ε = 0 checks.
    pub seed: u64,
}

/// Evaluates `(x, y)` clean and under `attacks` in sequence, with the sanity checks of `checks`.
pub fn evaluate_batch(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    ids: &[u64],
    attacks: &[&dyn Attack],
    checks: &Checks,
) -> Result<BatchEval, AttackError> {
    let Checks { noise_eps, noise_samples, seed } = *checks;
    let n = ids.len();
    let yv = y.to_vec1::<u32>()?;
    let correct = |xs: &Tensor| -> Result<Vec<bool>, AttackError> {
        let z = model.predict(xs)?;
        crate::error::finite_logits(&z)?;
        let p = z.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(p.iter().zip(&yv).map(|(a, b)| a == b).collect())
    };
    let clean = correct(x)?;
    let mut w = Warnings::default();

    // ε = 0 must reproduce clean accuracy exactly.
    let zero = Pgd {
        eps: 0.0,
        step_size: 0.1,
        steps: 1,
        norm: Norm::Linf,
        random_start: true,
        restarts: 1,
        loss: LossKind::CrossEntropy,
        seed,
    };
    let z = zero.perturb(model, x, y, None, ids)?;
    w.eps0_mismatch = z.fooled.iter().zip(&clean).filter(|(f, c)| **f == **c).count();

    // Zero input gradients among correctly classified points.
    let g = input_gradient(model, x, y, None, LossKind::CrossEntropy)?;
    let gmax = g.abs()?.reshape((n, ()))?.max(1)?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    for i in 0..n {
        if clean[i] {
            w.gradient_checked += 1;
            if gmax[i] == 0.0 {
                w.zero_gradient += 1;
            }
        }
    }

    let mut alive = clean.clone();
    let mut robust_after = Vec::new();
    w.evaluated = n;
    let mut gradient_attacks_ran = false;
    for a in attacks {
        let idx: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
        if !idx.is_empty() {
            let it = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), x.device())?;
            let sub_ids: Vec<u64> = idx.iter().map(|&i| ids[i]).collect();
            let out = a.perturb(model, &x.index_select(&it, 0)?, &y.index_select(&it, 0)?, None, &sub_ids)?;
            for (j, &i) in idx.iter().enumerate() {
                if out.fooled[j] {
                    alive[i] = false;
                    if a.gradient_free() && gradient_attacks_ran {
                        w.gradient_free_only += 1;
                    }
                }
            }
        }
        gradient_attacks_ran |= !a.gradient_free();
        robust_after.push(alive.clone());
    }

    // The noise check tests the attacks: without any there is nothing to test.
    if noise_samples > 0 && noise_eps > 0.0 && !attacks.is_empty() {
        let idx: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
        if !idx.is_empty() {
            let it = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), x.device())?;
            let xs = x.index_select(&it, 0)?;
            let root = Rng::new(seed).derive("noise-check");
            let mut broke = vec![false; idx.len()];
            for s in 0..noise_samples {
                let mut streams: Vec<Rng> = idx.iter().map(|&i| root.fork(ids[i]).fork(s as u64)).collect();
                let xn = random_start(&xs, noise_eps, Norm::Linf, &mut streams)?;
                let p = model.predict(&xn)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
                for (j, &i) in idx.iter().enumerate() {
                    if p[j] != yv[i] {
                        broke[j] = true;
                    }
                }
            }
            w.noise_beats_attack = broke.iter().filter(|&&b| b).count();
            // A point that noise in the ball breaks is not robust, whatever the attacks missed.
            for (j, &i) in idx.iter().enumerate() {
                if broke[j] {
                    alive[i] = false;
                }
            }
        }
    }
    let robust = if attacks.is_empty() { clean.clone() } else { alive };
    Ok(BatchEval { clean, robust_after, robust, warnings: w })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_masking_message_names_its_own_cause() {
        // Noise broke one point, Square none: masking is suspected, the noise says so, Square is not blamed.
        let w = Warnings { noise_beats_attack: 1, evaluated: 10_000, ..Warnings::default() };
        let m = w.messages();
        assert!(w.gradient_masking_suspected());
        assert!(m.iter().any(|m| m.contains("uniform noise")) && !m.iter().any(|m| m.contains("Square")), "{m:?}");
        // Square broke 2 % that the gradient attacks missed: its message, with the count.
        let w = Warnings { gradient_free_only: 200, evaluated: 10_000, ..Warnings::default() };
        let m = w.messages();
        assert!(w.gradient_masking_suspected() && m.len() == 1 && m[0].contains("broke 200 of 10000"), "{m:?}");
        // Under 1 %: nothing.
        let w = Warnings { gradient_free_only: 100, evaluated: 10_000, ..Warnings::default() };
        assert!(!w.gradient_masking_suspected() && w.messages().is_empty());
    }
}
