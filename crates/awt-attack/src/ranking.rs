//! What the multi-target attacks (APGD-T, FAB-T) share: the classes ranked by the clean logits,
//! and the bookkeeping of a sequence of runs, each on the points still standing.

use awt_base::Classifier;
use candle_core::{D, Tensor};

use crate::core::{Outcome, validate};
use crate::error::{AttackError, finite_logits, invalid};

/// What a self-targeting attack (APGD-T, FAB-T) checks before it starts.
pub(crate) struct OwnTargets<'a> {
    /// The attack's name in errors.
    pub name: &'a str,
    /// How many target classes it runs through.
    pub targets: usize,
    /// The fewest classes it works with (at least 2).
    pub min_classes: usize,
    /// The requirement as the error states it.
    pub needs: &'a str,
}

impl OwnTargets<'_> {
    /// The opening every self-targeting attack shares: no caller-given target, valid inputs,
    /// `1 ≤ targets < classes` with enough classes, finite clean logits. Returns each example's
    /// classes ranked by the clean logits ([`ranked_classes`]).
    pub fn rank(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
        eps: f64,
    ) -> Result<Vec<Vec<u32>>, AttackError> {
        if target.is_some() {
            return Err(invalid(format!("{} chooses its own targets: call it without a target", self.name)));
        }
        let k = validate(model, x, y, None, ids, eps)?;
        if k < self.min_classes || self.targets == 0 || self.targets >= k {
            return Err(invalid(format!("{} needs {}: {} targets, {k} classes", self.name, self.needs, self.targets)));
        }
        let logits = model.predict(x)?;
        finite_logits(&logits)?;
        ranked_classes(&logits)
    }
}

/// Each example's classes by decreasing clean logit (ties: lower class first); entry 0 is the
/// predicted class, entry `r` the `r`-th most likely other one.
pub(crate) fn ranked_classes(logits: &Tensor) -> Result<Vec<Vec<u32>>, AttackError> {
    let z = logits.to_dtype(candle_core::DType::F64)?;
    let (_, k) = z.dims2()?;
    let rows = z.to_vec2::<f64>()?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut idx: Vec<u32> = (0..k as u32).collect();
            idx.sort_by(|&a, &b| r[b as usize].total_cmp(&r[a as usize]).then(a.cmp(&b)));
            idx
        })
        .collect())
}

/// The points of a batch still standing, as a sub-batch.
pub(crate) struct Subset {
    /// Row of each sub-batch example in the full batch.
    pub rows: Vec<usize>,
    pub x: Tensor,
    pub y: Tensor,
    pub ids: Vec<u64>,
}

/// Per point of a batch: broken yet, and the adversarial example (the input until broken).
pub(crate) struct Standing {
    fooled: Vec<bool>,
    adv: Vec<Tensor>,
    loss: Vec<f32>,
}

impl Standing {
    /// Nothing broken yet; adversarial examples start as the inputs.
    pub fn new(x: &Tensor) -> Result<Standing, AttackError> {
        let n = x.dim(0)?;
        Ok(Standing {
            fooled: vec![false; n],
            adv: (0..n).map(|i| x.get(i)).collect::<Result<_, _>>()?,
            loss: vec![f32::NEG_INFINITY; n],
        })
    }

    /// The points not yet broken, or `None` when none is left.
    pub fn alive(&self, x: &Tensor, y: &Tensor, ids: &[u64]) -> Result<Option<Subset>, AttackError> {
        let rows: Vec<usize> = (0..self.fooled.len()).filter(|&i| !self.fooled[i]).collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let idx = Tensor::from_vec(rows.iter().map(|&i| i as u32).collect::<Vec<_>>(), rows.len(), x.device())?;
        Ok(Some(Subset {
            x: x.index_select(&idx, 0)?,
            y: y.index_select(&idx, 0)?,
            ids: rows.iter().map(|&i| ids[i]).collect(),
            rows,
        }))
    }

    /// The points still standing with their `rank`-th ranked class as the target, or `None` when
    /// none is left.
    pub fn alive_toward(
        &self,
        x: &Tensor,
        y: &Tensor,
        ids: &[u64],
        ranked: &[Vec<u32>],
        rank: usize,
    ) -> Result<Option<(Subset, Tensor)>, AttackError> {
        let Some(sub) = self.alive(x, y, ids)? else { return Ok(None) };
        let t: Vec<u32> = sub.rows.iter().map(|&i| ranked[i][rank]).collect();
        let t = Tensor::from_vec(t, sub.rows.len(), x.device())?;
        Ok(Some((sub, t)))
    }

    /// Takes a run's results on `rows`: broken points keep the example that broke them.
    pub fn absorb(&mut self, rows: &[usize], fooled: &[bool], adv: &Tensor, loss: &[f32]) -> Result<(), AttackError> {
        for (j, &i) in rows.iter().enumerate() {
            if fooled[j] {
                self.fooled[i] = true;
                self.adv[i] = adv.get(j)?;
                self.loss[i] = loss[j];
            } else if loss[j] > self.loss[i] {
                self.loss[i] = loss[j];
            }
        }
        Ok(())
    }

    /// The batch's outcome.
    pub fn outcome(self) -> Result<Outcome, AttackError> {
        Ok(Outcome { adv: Tensor::stack(&self.adv, 0)?, fooled: self.fooled, loss: self.loss })
    }
}

/// Per-example `z[i, a_i] − z[i, b_i]` for label vectors `a`, `b`: `(n,)`.
pub(crate) fn logit_gap(z: &Tensor, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let pick = |l: &Tensor| z.gather(&l.unsqueeze(1)?.contiguous()?, D::Minus1)?.squeeze(1);
    pick(a)? - pick(b)?
}
