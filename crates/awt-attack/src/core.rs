//! What every attack shares: the [`Attack`] trait, input validation, the loss-and-gradient step and
//! per-example best-iterate tracking.

use awt_base::Classifier;
use candle_core::{D, DType, Tensor};

use crate::error::{AttackError, finite_logits, invalid};
use crate::loss::{LossKind, per_example_loss};

/// The result of attacking a batch.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Per example: the first iterate that fooled the model, else the iterate of highest loss.
    pub adv: Tensor,
    /// Per example: did some iterate fool the model (misclassify, or hit the target)?
    pub fooled: Vec<bool>,
    /// Per example: the loss at `adv`.
    pub loss: Vec<f32>,
}

/// An attack on a batch of inputs in [0, 1].
pub trait Attack {
    /// Short name for tables, e.g. `pgd-20`.
    fn name(&self) -> String;

    /// True for attacks that never read a gradient (Square): what they break after the gradient
    /// attacks is evidence of gradient masking.
    fn gradient_free(&self) -> bool {
        false
    }

    /// Attacks `x` (batch first, values in [0, 1]) with labels `y: (n,)` u32. `target` makes the
    /// attack targeted. `ids` are stable example identifiers (dataset indices) that select each
    /// example's random stream, so results do not depend on batch composition.
    fn perturb(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
    ) -> Result<Outcome, AttackError>;
}

/// Checks inputs and settings shared by every attack; returns the number of classes.
pub(crate) fn validate(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    target: Option<&Tensor>,
    ids: &[u64],
    eps: f64,
) -> Result<usize, AttackError> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(invalid(format!("eps must be a finite number ≥ 0, got {eps}")));
    }
    let n = x.dim(0)?;
    if y.dims() != [n] {
        return Err(invalid(format!("labels have shape {:?}, expected [{n}]", y.dims())));
    }
    if ids.len() != n {
        return Err(invalid(format!("{} example ids for a batch of {n}", ids.len())));
    }
    let flat = x.flatten_all()?.to_dtype(DType::F64)?;
    let (lo, hi) = (flat.min(0)?.to_scalar::<f64>()?, flat.max(0)?.to_scalar::<f64>()?);
    if !(lo >= 0.0 && hi <= 1.0) {
        return Err(invalid(format!(
            "inputs must lie in [0, 1] (normalise inside the model), found values in [{lo}, {hi}]"
        )));
    }
    let k = model.predict(&x.narrow(0, 0, 1.min(n))?)?.dim(1)?;
    for (what, t) in [("label", Some(y)), ("target", target)] {
        if let Some(t) = t {
            let v = t.to_dtype(DType::U32)?.to_vec1::<u32>()?;
            if let Some(bad) = v.iter().find(|&&l| l as usize >= k) {
                return Err(invalid(format!("{what} {bad} is out of range for a model with {k} classes")));
            }
        }
    }
    Ok(k)
}

/// Per-example loss, correctness and input gradient at `x` (one forward, one backward).
pub(crate) struct Probe {
    pub loss: Vec<f32>,
    /// Did the model resist at this point (classified `y` correctly; targeted: did not predict the target)?
    pub resisted: Vec<bool>,
    pub grad: Tensor,
}

/// What counts as success for an attack run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
    /// The model no longer predicts the label (robust evaluation; also targeted-loss runs such as
    /// APGD-T and FAB-T, whose target only steers the search).
    Misclassify,
    /// The model predicts the target (targeted attacks in the narrow sense).
    HitTarget,
}

impl Goal {
    /// The goal of an attack called with `target`: hit it when given, else misclassify.
    pub(crate) fn of(target: Option<&Tensor>) -> Goal {
        if target.is_some() { Goal::HitTarget } else { Goal::Misclassify }
    }
}

pub(crate) fn probe(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    target: Option<&Tensor>,
    loss: LossKind,
    with_grad: bool,
) -> Result<Probe, AttackError> {
    probe_for(model, x, y, target, loss, with_grad, Goal::of(target))
}

/// [`probe`] with an explicit success criterion.
pub(crate) fn probe_for(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    target: Option<&Tensor>,
    loss: LossKind,
    with_grad: bool,
    goal: Goal,
) -> Result<Probe, AttackError> {
    let (logits, l, grad) = if with_grad {
        model.loss_and_input_grad(x, &|z: &Tensor| per_example_loss(z, y, target, loss))?
    } else {
        let z = model.predict(x)?;
        let l = per_example_loss(&z, y, target, loss)?;
        (z, l, x.zeros_like()?)
    };
    finite_logits(&logits)?;
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let resisted = match (goal, target) {
        (Goal::HitTarget, Some(t)) => pred.iter().zip(t.to_vec1::<u32>()?).map(|(p, t)| *p != t).collect(),
        _ => pred.iter().zip(y.to_vec1::<u32>()?).map(|(p, y)| *p == y).collect(),
    };
    Ok(Probe { loss: l.to_dtype(DType::F32)?.to_vec1::<f32>()?, resisted, grad })
}

/// The gradient of the per-example attack loss (summed over the batch) with respect to the input.
pub fn input_gradient(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    target: Option<&Tensor>,
    loss: LossKind,
) -> Result<Tensor, AttackError> {
    Ok(probe(model, x, y, target, loss, true)?.grad)
}

/// Running per-example best iterate: the first fooling iterate, else the highest loss.
pub(crate) struct Tracker {
    pub best: Tensor,
    pub fooled: Vec<bool>,
    pub loss: Vec<f32>,
}

impl Tracker {
    pub fn new(x: &Tensor, p: &Probe) -> Tracker {
        Tracker { best: x.clone(), fooled: p.resisted.iter().map(|r| !r).collect(), loss: p.loss.clone() }
    }

    /// Considers iterate `x` with probe `p`.
    pub fn update(&mut self, x: &Tensor, p: &Probe) -> Result<(), AttackError> {
        let mut take = vec![0u8; self.fooled.len()];
        for i in 0..self.fooled.len() {
            if self.fooled[i] {
                continue;
            }
            if !p.resisted[i] {
                self.fooled[i] = true;
                self.loss[i] = p.loss[i];
                take[i] = 1;
            } else if p.loss[i] > self.loss[i] {
                self.loss[i] = p.loss[i];
                take[i] = 1;
            }
        }
        if take.contains(&1) {
            self.best = select_rows(&take, x, &self.best)?;
        }
        Ok(())
    }
}

/// Restart 0 on the whole batch, then restarts 1.. only on the points still standing, keeping per
/// point the first fooling iterate, else the one of highest loss. `run(x, y, target, ids, restart)`
/// is one attack run; since each point's random stream depends on its id and the restart number
/// alone, running later restarts on a subset gives every point what a full-batch run would.
pub(crate) fn with_restarts(
    x: &Tensor,
    y: &Tensor,
    target: Option<&Tensor>,
    ids: &[u64],
    restarts: usize,
    mut run: impl FnMut(&Tensor, &Tensor, Option<&Tensor>, &[u64], u64) -> Result<Tracker, AttackError>,
) -> Result<Outcome, AttackError> {
    if restarts == 0 {
        return Err(invalid("restarts must be ≥ 1"));
    }
    let mut tr = run(x, y, target, ids, 0)?;
    for r in 1..restarts {
        let alive: Vec<usize> = (0..ids.len()).filter(|&i| !tr.fooled[i]).collect();
        if alive.is_empty() {
            break;
        }
        let idx = Tensor::from_vec(alive.iter().map(|&i| i as u32).collect::<Vec<_>>(), alive.len(), x.device())?;
        let sub_ids: Vec<u64> = alive.iter().map(|&i| ids[i]).collect();
        let tsub = target.map(|t| t.index_select(&idx, 0)).transpose()?;
        let sub = run(&x.index_select(&idx, 0)?, &y.index_select(&idx, 0)?, tsub.as_ref(), &sub_ids, r as u64)?;
        let mut rows: Vec<Tensor> = (0..ids.len()).map(|i| tr.best.get(i)).collect::<Result<_, _>>()?;
        for (j, &i) in alive.iter().enumerate() {
            if sub.fooled[j] || sub.loss[j] > tr.loss[i] {
                rows[i] = sub.best.get(j)?;
                tr.loss[i] = sub.loss[j];
                tr.fooled[i] = sub.fooled[j];
            }
        }
        tr.best = Tensor::stack(&rows, 0)?;
    }
    Ok(Outcome { adv: tr.best, fooled: tr.fooled, loss: tr.loss })
}

/// Row-wise choice: row i of `a` where `take[i] == 1`, else of `b`.
pub(crate) fn select_rows(take: &[u8], a: &Tensor, b: &Tensor) -> Result<Tensor, AttackError> {
    // On the CPU: row copies (`awt_base::fused::select_rows`), not a select over a broadcast mask.
    if awt_base::device::cpu_kernels(a)
        && let Some(t) = awt_base::fused::select_rows(take, a, b)?
    {
        return Ok(t);
    }
    let n = take.len();
    let mut shape = vec![n];
    shape.extend(std::iter::repeat_n(1, a.rank() - 1));
    let m = Tensor::from_vec(take.to_vec(), shape.as_slice(), a.device())?.broadcast_as(a.shape())?;
    Ok(m.where_cond(a, b)?)
}

/// Per-example ℓ2 norm over all non-batch dimensions, shaped `(n, 1, ..., 1)` for broadcasting.
pub(crate) fn l2_norms(t: &Tensor) -> Result<Tensor, AttackError> {
    let n = t.dim(0)?;
    let mut shape = vec![n];
    shape.extend(std::iter::repeat_n(1, t.rank() - 1));
    Ok(t.reshape((n, ()))?.sqr()?.sum_keepdim(1)?.sqrt()?.reshape(shape.as_slice())?)
}
