//! What determines a run: the objective, the optimiser, the schedule and the evaluation, checked
//! once at the boundary (every numeric setting, by name).

use crate::error::{TrainError, non_negative, positive, setting};
use crate::optim::{OptimizerConfig, Schedule};

/// The training objective.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// Cross-entropy on clean inputs.
    Natural,
    /// PGD-AT: cross-entropy on ℓ∞ PGD examples with random start.
    Pgd {
        /// Radius.
        eps: f64,
        /// Attack steps.
        steps: usize,
        /// Attack step size.
        step_size: f64,
    },
    /// Fast AT: one FGSM step of size `step_size` (1.25 ε in Wong et al.) from a uniform random start.
    Fgsm {
        /// Radius.
        eps: f64,
        /// Step size.
        step_size: f64,
    },
    /// TRADES: CE(f(x), y) + β · KL(f(x) ‖ f(x')), x' maximising the KL by PGD.
    Trades {
        /// Radius.
        eps: f64,
        /// Attack steps.
        steps: usize,
        /// Attack step size.
        step_size: f64,
        /// Trade-off β.
        beta: f64,
    },
}

/// Everything that determines a run (its hash names the run and guards `resume`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// What each step minimises.
    pub objective: Objective,
    /// Run seed: shuffles and attack starts derive from it.
    pub seed: u64,
    /// Test examples (the first ones) for the per-epoch evaluation; 0 skips the evaluation (its
    /// accuracies are recorded as null).
    pub eval_n: usize,
    /// ε of the per-epoch PGD evaluation.
    pub eval_eps: f64,
    /// Steps of the per-epoch PGD evaluation (step size 2.5 ε / steps); 0 evaluates clean accuracy
    /// only and records no robust accuracy.
    pub eval_steps: usize,
}

impl Objective {
    fn check(&self) -> Result<(), TrainError> {
        match *self {
            Objective::Natural => Ok(()),
            Objective::Pgd { eps, steps, step_size } | Objective::Trades { eps, steps, step_size, .. } => {
                non_negative("eps", eps)?;
                positive("step_size", step_size)?;
                if steps == 0 {
                    return Err(setting("steps", "must be ≥ 1 (train with --adv none for no adversary)"));
                }
                if let Objective::Trades { beta, .. } = *self {
                    non_negative("beta", beta)?;
                }
                Ok(())
            }
            Objective::Fgsm { eps, step_size } => {
                non_negative("eps", eps)?;
                positive("step_size", step_size)
            }
        }
    }
}

/// A [`TrainConfig`] whose every setting has been checked ([`TrainConfig::validate`]): what
/// [`crate::train`] takes, so nothing downstream checks again.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidTrainConfig(TrainConfig);

impl std::ops::Deref for ValidTrainConfig {
    type Target = TrainConfig;
    fn deref(&self) -> &TrainConfig {
        &self.0
    }
}

impl TrainConfig {
    /// Checks every setting once, at the boundary (the error names the setting), and returns the
    /// checked configuration.
    pub fn validate(self) -> Result<ValidTrainConfig, TrainError> {
        self.check()?;
        Ok(ValidTrainConfig(self))
    }

    fn check(&self) -> Result<(), TrainError> {
        if self.epochs == 0 {
            return Err(setting("epochs", "must be ≥ 1"));
        }
        if self.batch_size == 0 {
            return Err(setting("batch", "must be ≥ 1"));
        }
        positive("lr", self.lr)?;
        non_negative("eps", self.eval_eps)?;
        self.objective.check()?;
        self.optimizer.check()?;
        self.schedule.check(self.epochs)
    }
}
