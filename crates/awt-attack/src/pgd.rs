//! Projected gradient descent (Madry et al. 2018) in ℓ∞ and ℓ2, with random starts, restarts,
//! per-example best-iterate tracking and CE or CW-margin loss.

use awt_base::{Classifier, Rng};
use candle_core::Tensor;

use crate::core::{Attack, Outcome, Tracker, l2_norms, probe, validate, with_restarts};
use crate::error::{AttackError, invalid};
use crate::loss::LossKind;

/// The threat model's norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// max |δ_i| ≤ ε; steps follow the gradient's sign.
    Linf,
    /// ‖δ‖₂ ≤ ε; steps follow the normalised gradient.
    L2,
}

impl std::str::FromStr for Norm {
    type Err = awt_base::UnknownName;

    /// `linf` or `l2`.
    fn from_str(s: &str) -> Result<Norm, Self::Err> {
        match s {
            "linf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            _ => Err(awt_base::UnknownName { what: "norm", got: s.to_string(), expected: "linf or l2".into() }),
        }
    }
}

impl Norm {
    /// `linf` or `l2`.
    pub fn name(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }
}

/// PGD settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Pgd {
    /// Radius in pixel units.
    pub eps: f64,
    /// Step size α.
    pub step_size: f64,
    /// Gradient steps per restart.
    pub steps: usize,
    /// Threat model.
    pub norm: Norm,
    /// Start uniformly in the ball (else at the clean input).
    pub random_start: bool,
    /// Independent runs; a point counts as broken if any run breaks it. ≥ 1.
    pub restarts: usize,
    /// Loss to ascend.
    pub loss: LossKind,
    /// Run seed; each example's start comes from `Rng::new(seed).derive("pgd").fork(id).fork(restart)`.
    pub seed: u64,
}

/// Projects `x_adv` onto the ε-ball around `x` and the [0, 1] box.
pub(crate) fn project(x_adv: &Tensor, x: &Tensor, eps: f64, norm: Norm) -> Result<Tensor, AttackError> {
    let p = match norm {
        Norm::Linf => x_adv.clamp(&(x - eps)?, &(x + eps)?)?,
        Norm::L2 => {
            let d = (x_adv - x)?;
            let n = l2_norms(&d)?;
            // factor = min(1, ε/‖δ‖); ‖δ‖ = 0 gives ε/1e-12 → clamped to 1.
            let f = (n + 1e-12)?.recip()?.affine(eps, 0.0)?.clamp(0.0, 1.0)?;
            (x + d.broadcast_mul(&f)?)?
        }
    };
    Ok(p.clamp(0.0, 1.0)?)
}

/// One ascent step of size `step_size` followed by the projection; the ℓ∞ case on CPU as one fused
/// pass (`awt_base::fused::LinfStep`, equal to the composition).
pub(crate) fn step_project(
    x_adv: &Tensor,
    grad: &Tensor,
    x: &Tensor,
    step_size: f64,
    alpha: &Tensor,
    eps: f64,
    norm: Norm,
) -> Result<Tensor, AttackError> {
    if norm == Norm::Linf && awt_base::device::cpu_kernels(x) && x_adv.dtype() == x.dtype() && grad.dtype() == x.dtype()
    {
        let op = awt_base::fused::LinfStep { alpha: step_size, eps };
        return Ok(x_adv.contiguous()?.apply_op3(&grad.contiguous()?, &x.contiguous()?, op)?);
    }
    project(&ascend(x_adv, grad, alpha, norm)?, x, eps, norm)
}

/// One ascent step of size `alpha` (a tensor broadcastable per example, or a scalar tensor).
pub(crate) fn ascend(x_adv: &Tensor, grad: &Tensor, alpha: &Tensor, norm: Norm) -> Result<Tensor, AttackError> {
    let dir = match norm {
        Norm::Linf => grad.sign()?,
        Norm::L2 => grad.broadcast_div(&(l2_norms(grad)? + 1e-12)?)?,
    };
    Ok((x_adv + dir.broadcast_mul(alpha)?)?)
}

/// A uniform random point of the ε-ball (ℓ∞: uniform per coordinate; ℓ2: uniform in the ball),
/// clipped to the box, from each example's own stream.
pub(crate) fn random_start(x: &Tensor, eps: f64, norm: Norm, streams: &mut [Rng]) -> Result<Tensor, AttackError> {
    let n = x.dim(0)?;
    let d = x.elem_count() / n.max(1);
    let mut v = Vec::with_capacity(n * d);
    for r in streams.iter_mut() {
        match norm {
            Norm::Linf => v.extend((0..d).map(|_| r.uniform_range(-eps, eps))),
            Norm::L2 => {
                let g: Vec<f64> = (0..d).map(|_| r.normal()).collect();
                let len = g.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
                let radius = eps * r.uniform().powf(1.0 / d as f64);
                v.extend(g.iter().map(|a| a / len * radius));
            }
        }
    }
    let delta = Tensor::from_vec(v, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok((x + delta)?.clamp(0.0, 1.0)?)
}

impl Pgd {
    /// ℓ∞ PGD from a uniform random start, one restart, cross-entropy loss: the attack of PGD
    /// adversarial training (Madry et al. 2018) and of most robust evaluations.
    pub fn linf(eps: f64, steps: usize, step_size: f64, seed: u64) -> Pgd {
        Pgd {
            eps,
            step_size,
            steps,
            norm: Norm::Linf,
            random_start: true,
            restarts: 1,
            loss: LossKind::CrossEntropy,
            seed,
        }
    }

    /// The evaluation step size of Madry et al., 2.5 ε / steps: enough steps of it cross the ball
    /// from any start.
    pub fn eval_step(eps: f64, steps: usize) -> f64 {
        2.5 * eps / steps.max(1) as f64
    }

    /// The training step size when none is given, 0.25 ε (the 2.5 ε / 10 of PGD-10 training).
    pub fn train_step(eps: f64) -> f64 {
        0.25 * eps
    }

    fn check(&self) -> Result<(), AttackError> {
        if !self.step_size.is_finite() || self.step_size <= 0.0 {
            return Err(invalid(format!("step size must be > 0, got {}", self.step_size)));
        }
        if self.restarts == 0 {
            return Err(invalid("restarts must be ≥ 1"));
        }
        Ok(())
    }

    /// One run from the start of restart `restart`.
    fn run(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
        restart: u64,
    ) -> Result<Tracker, AttackError> {
        let mut x_adv = if self.random_start && self.eps > 0.0 {
            let root = Rng::new(self.seed).derive("pgd");
            let mut streams: Vec<Rng> = ids.iter().map(|&id| root.fork(id).fork(restart)).collect();
            random_start(x, self.eps, self.norm, &mut streams)?
        } else {
            x.clone()
        };
        let alpha = Tensor::new(self.step_size, x.device())?.to_dtype(x.dtype())?;
        let mut p = probe(model, &x_adv, y, target, self.loss, self.steps > 0)?;
        let mut tr = Tracker::new(&x_adv, &p);
        for s in 0..self.steps {
            x_adv = step_project(&x_adv, &p.grad, x, self.step_size, &alpha, self.eps, self.norm)?.detach();
            p = probe(model, &x_adv, y, target, self.loss, s + 1 < self.steps)?;
            tr.update(&x_adv, &p)?;
        }
        Ok(tr)
    }
}

impl Pgd {
    /// The final iterate of the first run, without best-iterate tracking or restarts: what PGD
    /// adversarial training (Madry et al. 2018) and fast FGSM training (Wong et al. 2020, with
    /// `steps: 1`) train on. One forward and one input-gradient pass per step, nothing else.
    pub fn last_iterate(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        ids: &[u64],
    ) -> Result<Tensor, AttackError> {
        if !self.eps.is_finite() || self.eps < 0.0 {
            return Err(invalid(format!("eps must be a finite number ≥ 0, got {}", self.eps)));
        }
        self.check()?;
        let mut x_adv = if self.random_start && self.eps > 0.0 {
            let root = Rng::new(self.seed).derive("pgd");
            let mut streams: Vec<Rng> = ids.iter().map(|&id| root.fork(id).fork(0)).collect();
            random_start(x, self.eps, self.norm, &mut streams)?
        } else {
            x.clone()
        };
        let alpha = Tensor::new(self.step_size, x.device())?.to_dtype(x.dtype())?;
        for _ in 0..self.steps {
            let (_, _, g) = model
                .loss_and_input_grad(&x_adv, &|z: &Tensor| crate::loss::per_example_loss(z, y, None, self.loss))?;
            x_adv = step_project(&x_adv, &g, x, self.step_size, &alpha, self.eps, self.norm)?.detach();
        }
        Ok(x_adv)
    }
}

impl Attack for Pgd {
    fn name(&self) -> String {
        let l = if self.loss == LossKind::CrossEntropy { String::new() } else { format!("-{}", self.loss.name()) };
        let r = if self.restarts > 1 { format!("x{}", self.restarts) } else { String::new() };
        format!("pgd{l}-{}{r}", self.steps)
    }

    fn perturb(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
    ) -> Result<Outcome, AttackError> {
        validate(model, x, y, target, ids, self.eps)?;
        self.check()?;
        with_restarts(x, y, target, ids, self.restarts, |x, y, t, ids, r| self.run(model, x, y, t, ids, r))
    }
}
