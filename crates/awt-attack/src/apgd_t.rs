//! APGD-T (Croce & Hein, ICML 2020): APGD on the targeted DLR loss, run once for each of the
//! `targets` classes the model ranks highest after the predicted one on the clean input (AutoAttack's
//! standard version uses 9), each run on the points still standing. A point is broken when it is
//! misclassified, whatever the class: the target only steers the search.

use awt_base::{Classifier, Rng};
use candle_core::Tensor;

use crate::apgd::Apgd;
use crate::core::{Attack, Goal, Outcome};
use crate::error::{AttackError, invalid};
use crate::loss::LossKind;
use crate::pgd::Norm;
use crate::ranking::{OwnTargets, Standing};

/// APGD-T settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ApgdTargeted {
    /// Radius in pixel units.
    pub eps: f64,
    /// Iterations per target (100 in AutoAttack).
    pub steps: usize,
    /// Threat model.
    pub norm: Norm,
    /// How many target classes, taken in the order of the clean logits after the top one (9).
    pub targets: usize,
    /// Random starts per target (1 in AutoAttack's standard version).
    pub restarts: usize,
    /// Run seed; each example's start comes from its own stream per target and restart.
    pub seed: u64,
}

impl ApgdTargeted {
    /// AutoAttack's standard settings: ℓ∞, 100 iterations, 9 targets, 1 restart.
    pub fn standard(eps: f64, seed: u64) -> ApgdTargeted {
        ApgdTargeted { eps, steps: 100, norm: Norm::Linf, targets: 9, restarts: 1, seed }
    }
}

impl Attack for ApgdTargeted {
    fn name(&self) -> String {
        "apgd-t".into()
    }

    fn perturb(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
    ) -> Result<Outcome, AttackError> {
        let ranked = OwnTargets {
            name: "APGD-T",
            targets: self.targets,
            min_classes: 4,
            needs: "1 ≤ targets < classes and at least 4 classes (targeted DLR)",
        }
        .rank(model, x, y, target, ids, self.eps)?;
        if self.restarts == 0 {
            return Err(invalid("restarts must be ≥ 1"));
        }
        let apgd = Apgd {
            eps: self.eps,
            steps: self.steps,
            norm: self.norm,
            restarts: 1,
            loss: LossKind::Dlr,
            seed: self.seed,
        };
        let mut standing = Standing::new(x)?;
        for rank in 1..=self.targets {
            let root = Rng::new(self.seed).derive("apgd-t").fork(rank as u64);
            for restart in 0..self.restarts {
                let Some((sub, t)) = standing.alive_toward(x, y, ids, &ranked, rank)? else { break };
                let tr =
                    apgd.run(model, &sub.x, &sub.y, Some(&t), &sub.ids, restart as u64, &root, Goal::Misclassify)?;
                standing.absorb(&sub.rows, &tr.fooled, &tr.best, &tr.loss)?;
            }
        }
        standing.outcome()
    }
}
