//! Every option of the NTT / AWT search, with method.md's defaults, checked once.

use std::collections::BTreeMap;

use crate::error::SearchError;
use awt_runs::Density;

/// Which search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Neural Tangent Transfer: kernel and output matching on clean inputs.
    Ntt,
    /// Adversarial winning tickets: the same on adversarial inputs.
    Awt,
}

/// Whose adversarial examples the AWT loss uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvSource {
    /// PGD against the (fixed) dense teacher: constants of the batch (default).
    Teacher,
    /// PGD against the current student.
    Student,
    /// Half the batch from each.
    Both,
}

/// Which inputs enter the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputMix {
    /// Adversarial inputs only (default for AWT).
    Adversarial,
    /// Clean and adversarial inputs concatenated.
    CleanAndAdversarial,
}

/// Which weights the ticket keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFrom {
    /// m ⊙ θ_s, the transferred student weights (default).
    Transferred,
    /// m ⊙ θ_T, rewound to the teacher's initialisation.
    Rewind,
}

/// Every option of the search (method.md's defaults in [`SearchConfig::defaults`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SearchConfig {
    /// NTT or AWT.
    pub method: Method,
    /// Target density: of every pruned layer, or overall where `layer_keep` gives the layers' counts.
    pub density: Density,
    /// Optimiser steps.
    pub steps: usize,
    /// Minibatch size (split into two halves for the kernel).
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// λ_ker.
    pub lambda_ker: f64,
    /// λ_l2.
    pub lambda_l2: f64,
    /// Re-select the mask every F steps (0: never).
    pub mask_every: usize,
    /// ℓ∞ radius of the adversarial inputs.
    pub eps: f64,
    /// PGD steps.
    pub attack_steps: usize,
    /// PGD step size.
    pub attack_step_size: f64,
    /// Whose adversarial examples.
    pub adv_source: AdvSource,
    /// Which inputs.
    pub inputs: InputMix,
    /// Which weights the ticket keeps.
    pub weights: WeightsFrom,
    /// Seed of shuffles and attack starts.
    pub seed: u64,
    /// Layers every mask keeps whole, counted in the density (e.g. the output layer, so that no
    /// class is cut off); empty: every layer is pruned at the density.
    pub keep_dense: Vec<String>,
    /// How many weights each mask re-selection keeps in each layer (by weight name), e.g. another
    /// mask's per-layer counts (`awt_prune::kept_counts`); they must add up to `density` of the
    /// net's weights. Empty: every pruned layer at `density` (the method's own allocation).
    pub layer_keep: BTreeMap<String, usize>,
}

impl SearchConfig {
    /// method.md's defaults for `method` at `density` (MNIST-size MLP settings of NTT's code).
    pub fn defaults(method: Method, density: Density) -> SearchConfig {
        SearchConfig {
            method,
            density,
            steps: 1000,
            batch: 64,
            lr: 5e-4,
            lambda_ker: 1e-3,
            lambda_l2: 1e-4,
            mask_every: 100,
            eps: 0.1,
            attack_steps: 10,
            attack_step_size: 0.025,
            adv_source: AdvSource::Teacher,
            inputs: InputMix::Adversarial,
            weights: WeightsFrom::Transferred,
            seed: 0,
            keep_dense: Vec::new(),
            layer_keep: BTreeMap::new(),
        }
    }

    /// Checks every setting once (the error names it) and returns the checked configuration.
    pub fn validate(self) -> Result<ValidSearchConfig, SearchError> {
        self.check()?;
        Ok(ValidSearchConfig(self))
    }

    fn check(&self) -> Result<(), SearchError> {
        let bad = |s: String| Err(SearchError::Invalid(s));
        if self.steps == 0 {
            return bad("steps must be ≥ 1".into());
        }
        if self.batch < 2 {
            return bad(format!("batch must be ≥ 2 (it is split in two halves), got {}", self.batch));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be > 0, got {}", self.lr));
        }
        if !(self.lambda_ker.is_finite()
            && self.lambda_ker >= 0.0
            && self.lambda_l2.is_finite()
            && self.lambda_l2 >= 0.0)
        {
            return bad("λ_ker and λ_l2 must be finite and ≥ 0".into());
        }
        if self.method == Method::Awt
            && !(self.eps.is_finite()
                && self.eps >= 0.0
                && self.attack_step_size.is_finite()
                && self.attack_step_size > 0.0)
        {
            return bad("AWT needs a finite eps ≥ 0 and a finite attack step size > 0".into());
        }
        if self.method == Method::Awt && self.attack_steps == 0 {
            return bad("AWT needs attack steps ≥ 1 (its inputs are PGD examples)".into());
        }
        Ok(())
    }
}

/// A [`SearchConfig`] whose every setting has been checked ([`SearchConfig::validate`]): what
/// [`crate::search`] takes.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSearchConfig(SearchConfig);

impl std::ops::Deref for ValidSearchConfig {
    type Target = SearchConfig;
    fn deref(&self) -> &SearchConfig {
        &self.0
    }
}
