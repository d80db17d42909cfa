//! APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble
//! of diverse parameter-free attacks", Alg. 1): step size 2ε, momentum 0.75, and at each checkpoint
//! the step size of an example is halved (and its iterate reset to its best point) when fewer than
//! 75 % of the steps since the last checkpoint raised its loss, or when the step size was not halved
//! last time and the best loss has not improved since. Checkpoints follow p₀ = 0, p₁ = 0.22,
//! p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06).

use awt_base::{Classifier, Rng};
use candle_core::Tensor;

use crate::core::{Attack, Goal, Outcome, Tracker, probe_for, select_rows, validate, with_restarts};
use crate::error::{AttackError, invalid};
use crate::loss::LossKind;
use crate::pgd::{Norm, ascend, project, random_start};

/// APGD settings. `loss: CrossEntropy` is APGD-CE, `loss: Dlr` is APGD-DLR.
#[derive(Clone, Debug, PartialEq)]
pub struct Apgd {
    /// Radius in pixel units.
    pub eps: f64,
    /// Iterations per restart (100 in AutoAttack).
    pub steps: usize,
    /// Threat model.
    pub norm: Norm,
    /// Independent random starts (AutoAttack's standard version uses 1).
    pub restarts: usize,
    /// Loss to ascend.
    pub loss: LossKind,
    /// Run seed; per-example streams as in PGD.
    pub seed: u64,
}

/// The iterations at which step sizes are reconsidered: ⌈p_j · steps⌉ for j ≥ 1.
pub(crate) fn checkpoints(steps: usize) -> Vec<usize> {
    let mut p = vec![0.0f64, 0.22];
    while *p.last().expect("non-empty") < 1.0 {
        let n = p.len();
        p.push(p[n - 1] + (p[n - 1] - p[n - 2] - 0.03).max(0.06));
    }
    let mut w: Vec<usize> =
        p[1..].iter().map(|&q| (q * steps as f64 - 1e-9).ceil() as usize).filter(|&c| c > 0 && c <= steps).collect();
    w.dedup();
    w
}

impl Apgd {
    /// One run from restart `restart`'s random start, drawn from `root.fork(id).fork(restart)`;
    /// `goal` says when a point counts as broken.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
        restart: u64,
        root: &Rng,
        goal: Goal,
    ) -> Result<Tracker, AttackError> {
        let n = ids.len();
        let mut streams: Vec<Rng> = ids.iter().map(|&id| root.fork(id).fork(restart)).collect();
        let x0 = if self.eps > 0.0 { random_start(x, self.eps, self.norm, &mut streams)? } else { x.clone() };
        let mut p = probe_for(model, &x0, y, target, self.loss, true, goal)?;
        let mut tr = Tracker::new(&x0, &p);
        // Best-loss point for step-size resets (distinct from the fooling-first tracker).
        let mut x_max = x0.clone();
        let mut grad_max = p.grad.clone();
        let mut f_max = p.loss.clone();
        let mut eta = vec![2.0 * self.eps; n];
        let mut x_prev = x0.clone();
        let mut x_cur = x0;
        let mut loss_prev = p.loss.clone();
        let mut increases = vec![0usize; n];
        let mut f_max_at_last_check = f_max.clone();
        let mut halved_last_check = vec![false; n];
        let checks = checkpoints(self.steps);
        let mut last_check = 0usize;
        let mut per_example = vec![1usize; x_cur.rank()];
        per_example[0] = n;
        // ℓ∞ on the CPU: the update below in one pass (`awt_base::fused::apgd_linf_step`, equal to it).
        let fused = self.norm == Norm::Linf && awt_base::device::cpu_kernels(x) && p.grad.dtype() == x.dtype();
        for k in 0..self.steps {
            let fast = if fused {
                awt_base::fused::apgd_linf_step(&x_cur, &p.grad, x, (k > 0).then_some(&x_prev), &eta, self.eps)?
            } else {
                None
            };
            let next = match fast {
                Some(next) => next,
                None => {
                    let eta_t =
                        Tensor::from_vec(eta.clone(), per_example.as_slice(), x.device())?.to_dtype(x.dtype())?;
                    let z = project(&ascend(&x_cur, &p.grad, &eta_t, self.norm)?, x, self.eps, self.norm)?;
                    if k == 0 {
                        z
                    } else {
                        // x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1})), α = 0.75.
                        let m = ((&z - &x_cur)? * 0.75)?.add(&((&x_cur - &x_prev)? * 0.25)?)?;
                        project(&(&x_cur + m)?, x, self.eps, self.norm)?
                    }
                }
            };
            x_prev = x_cur;
            x_cur = next.detach();
            p = probe_for(model, &x_cur, y, target, self.loss, k + 1 < self.steps, goal)?;
            tr.update(&x_cur, &p)?;
            let mut take = vec![0u8; n];
            for i in 0..n {
                if p.loss[i] > loss_prev[i] {
                    increases[i] += 1;
                }
                if p.loss[i] > f_max[i] {
                    f_max[i] = p.loss[i];
                    take[i] = 1;
                }
            }
            loss_prev.clone_from(&p.loss);
            if take.contains(&1) {
                x_max = select_rows(&take, &x_cur, &x_max)?;
                grad_max = select_rows(&take, &p.grad, &grad_max)?;
            }
            if checks.contains(&(k + 1)) && k + 1 < self.steps {
                let span = (k + 1 - last_check) as f64;
                let mut reset = vec![0u8; n];
                for i in 0..n {
                    let oscillating = (increases[i] as f64) < 0.75 * span;
                    let stalled = !halved_last_check[i] && f_max[i] <= f_max_at_last_check[i];
                    let halve = oscillating || stalled;
                    halved_last_check[i] = halve;
                    if halve {
                        eta[i] /= 2.0;
                        reset[i] = 1;
                    }
                }
                if reset.contains(&1) {
                    // Restart from the best point; the momentum term then vanishes for that example.
                    x_cur = select_rows(&reset, &x_max, &x_cur)?;
                    x_prev = select_rows(&reset, &x_max, &x_prev)?;
                    p.grad = select_rows(&reset, &grad_max, &p.grad)?;
                }
                f_max_at_last_check.clone_from(&f_max);
                increases.iter_mut().for_each(|c| *c = 0);
                last_check = k + 1;
            }
        }
        Ok(tr)
    }
}

impl Attack for Apgd {
    fn name(&self) -> String {
        format!("apgd-{}", self.loss.name())
    }

    fn perturb(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
    ) -> Result<Outcome, AttackError> {
        let k = validate(model, x, y, target, ids, self.eps)?;
        if self.loss == LossKind::Dlr && k < 3 + usize::from(target.is_some()) {
            return Err(invalid(format!(
                "the DLR loss needs at least {} classes, the model has {k}",
                3 + usize::from(target.is_some())
            )));
        }
        let root = Rng::new(self.seed).derive("apgd");
        let goal = Goal::of(target);
        with_restarts(x, y, target, ids, self.restarts, |x, y, t, ids, r| self.run(model, x, y, t, ids, r, &root, goal))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checkpoints_follow_croce_and_hein() {
        // p = 0, .22, .41, .57, .70, .80, .87, .93, .99, 1.05 → ⌈100 p⌉ for p ≤ 1.
        assert_eq!(super::checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    }
}
