//! What the multi-target attacks (APGD-T, FAB-T) share: the classes ranked by the clean logits,
//! and the bookkeeping of a sequence of runs, each on the points still standing.

use candle_core::{D, Tensor};

use crate::core::Outcome;
use crate::error::AttackError;

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
