//! Where a pruning ends: an overall density spread over the layers by a rule, or the number of
//! weights each layer keeps (another mask's allocation, [`crate::kept_counts`]) — so that any score
//! can be read at any allocation.

use awt_runs::Density;
use std::collections::BTreeMap;

use crate::alloc::{Allocation, Masks, PruneError, Scores, after_round, select_counts, select_keeping};

/// The masks a pruner ends with.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// `density` overall, spread over the layers by `alloc`, the layers named in `dense` kept whole
    /// and counted in the density ([`select_keeping`]).
    Density {
        /// Overall density.
        density: Density,
        /// How it is spread over the layers.
        alloc: Allocation,
        /// Layers kept whole (the output layer, so that no class is cut off).
        dense: &'a [String],
    },
    /// Exactly this many weights in each layer, by each layer's own top scores ([`select_counts`]).
    Counts(&'a BTreeMap<String, usize>),
}

impl Target<'_> {
    /// The masks of a one-shot score.
    pub fn select(&self, scores: &Scores) -> Result<Masks, PruneError> {
        self.select_round(scores, 1, 1)
    }

    /// The masks after round `r` (from 1) of `rounds` of an iterative score (SynFlow's, NTK-SAP's) on
    /// the exponential schedule: density `d^(r/rounds)` overall, or with counts, each layer of `n`
    /// weights keeping `n · (c/n)^(r/rounds)` of its final `c`, rounded (never fewer than `c`). The
    /// last round ends at the target exactly.
    pub fn select_round(&self, scores: &Scores, r: usize, rounds: usize) -> Result<Masks, PruneError> {
        match *self {
            Target::Density { density, alloc, dense } => {
                select_keeping(scores, after_round(density, r, rounds), alloc, dense)
            }
            Target::Counts(counts) if r >= rounds => select_counts(scores, counts),
            Target::Counts(counts) => {
                let at: BTreeMap<String, usize> = counts
                    .iter()
                    .map(|(k, &c)| {
                        // A layer the scores do not have is named by select_counts.
                        let n = scores.get(k).map_or(c, |s| s.elem_count());
                        let f = (c as f64 / n.max(1) as f64).powf(r as f64 / rounds as f64);
                        (k.clone(), ((n as f64 * f).round() as usize).clamp(c.min(n), n))
                    })
                    .collect();
                select_counts(scores, &at)
            }
        }
    }
}

/// Counts as metadata records them: `fc1.weight:8158,fc2.weight:4152,…`.
pub fn counts_text(counts: &BTreeMap<String, usize>) -> String {
    counts.iter().map(|(k, n)| format!("{k}:{n}")).collect::<Vec<_>>().join(",")
}

/// Layer counts that fit weights of these `sizes`: they keep `round(density · total)` weights in
/// all, and the layers named in `dense` whole (the output-layer rule).
pub fn check_counts(
    sizes: &BTreeMap<String, usize>,
    counts: &BTreeMap<String, usize>,
    density: Density,
    dense: &[String],
) -> Result<(), PruneError> {
    let total: usize = sizes.values().sum();
    let want = (density.get() * total as f64).round() as usize;
    let kept: usize = counts.values().sum();
    if kept != want {
        return Err(PruneError::Invalid(format!(
            "the layer counts keep {kept} weights, not the {want} of density {density} ({total} weights)"
        )));
    }
    if let Some(k) = dense.iter().find(|k| counts.get(*k) != sizes.get(*k)) {
        return Err(PruneError::Invalid(format!(
            "the layer counts do not keep `{k}` whole, as the output-layer rule asks"
        )));
    }
    Ok(())
}
