//! Optimisers with PyTorch's update rules (candle-nn's SGD has no momentum or weight decay):
//! SGD with momentum, dampening, Nesterov and L2 weight decay; Adam (L2 decay); AdamW (decoupled).

use candle_core::{Tensor, Var};

use crate::error::{TrainError, fraction, non_negative, positive, setting};

impl OptimizerConfig {
    /// Checks the hyper-parameters (PyTorch's rules); the error names the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        match *self {
            OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                fraction("momentum", momentum)?;
                if !(0.0..=1.0).contains(&dampening) {
                    return Err(setting("dampening", format!("must be in [0, 1], got {dampening}")));
                }
                non_negative("wd", weight_decay)?;
                if nesterov && (momentum == 0.0 || dampening != 0.0) {
                    return Err(setting("nesterov", "needs a momentum > 0 and zero dampening"));
                }
            }
            OptimizerConfig::Adam { beta1, beta2, eps, weight_decay, .. } => {
                fraction("beta1", beta1)?;
                fraction("beta2", beta2)?;
                positive("adam_eps", eps)?;
                non_negative("wd", weight_decay)?;
            }
        }
        Ok(())
    }
}

impl Schedule {
    /// Checks the schedule for a run of `epochs` epochs; the error names the setting.
    pub fn check(&self, epochs: usize) -> Result<(), TrainError> {
        match self {
            Schedule::Constant | Schedule::Cosine => Ok(()),
            Schedule::HydraCosine { epochs: e } if *e == epochs => Ok(()),
            Schedule::HydraCosine { epochs: e } => {
                Err(setting("schedule", format!("HYDRA's cosine schedule is for {e} epochs, but the run has {epochs}")))
            }
            Schedule::MultiStep { milestones, gamma } => {
                positive("gamma", *gamma)?;
                if let Some(w) = milestones.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(setting("milestones", format!("must increase strictly, got {} then {}", w[0], w[1])));
                }
                if let Some(m) = milestones.iter().find(|&&m| m == 0 || m >= epochs) {
                    let inside = match epochs {
                        0 | 1 => format!("a run of {epochs} epoch(s) has no epoch to step at"),
                        2 => "the only one a run of 2 epochs has is epoch 1 (0-based)".to_string(),
                        _ => format!("milestones are epochs 1..={} (0-based)", epochs - 1),
                    };
                    return Err(setting("milestones", format!("epoch {m} is not inside the run: {inside}")));
                }
                Ok(())
            }
            Schedule::OneCycle { warmup } => {
                if *warmup > 0.0 && *warmup < 1.0 {
                    Ok(())
                } else {
                    Err(setting("warmup", format!("the warm-up fraction must be in (0, 1), got {warmup}")))
                }
            }
        }
    }
}

/// Optimiser and its hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd {
        /// Momentum factor (0: none).
        momentum: f64,
        /// Dampening of the momentum.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.Adam` (`decoupled: false`, L2 penalty in the gradient) or `torch.optim.AdamW`
    /// (`decoupled: true`).
    Adam {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        eps: f64,
        /// Weight decay.
        weight_decay: f64,
        /// AdamW's decoupled decay.
        decoupled: bool,
    },
}

/// Optimiser state for a list of named variables (sorted names: stable files).
pub struct Optimizer {
    cfg: OptimizerConfig,
    vars: Vec<(String, Var)>,
    /// SGD: momentum buffers; Adam: first moments.
    m: Vec<Option<Tensor>>,
    /// Adam: second moments.
    v: Vec<Option<Tensor>>,
    step: u64,
}

impl Optimizer {
    /// A fresh optimiser over `vars`.
    pub fn new(cfg: OptimizerConfig, vars: Vec<(String, Var)>) -> Optimizer {
        let n = vars.len();
        Optimizer { cfg, vars, m: vec![None; n], v: vec![None; n], step: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` from the gradients in `grads`.
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            // Detached: an update computed from the variable's own (tracked) tensor would record an
            // autograd graph, and the optimiser state built from it would chain every step's graph
            // (with weight decay, memory grew by gigabytes per epoch).
            let (g, w) = (&g.detach(), &var.as_tensor().detach());
            match self.cfg {
                OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                    let mut g = g.clone();
                    if weight_decay != 0.0 {
                        g = (g + (w * weight_decay)?)?;
                    }
                    if momentum != 0.0 {
                        let buf = match self.m[i].take() {
                            None => g.clone(),
                            Some(b) => ((b * momentum)? + (&g * (1.0 - dampening))?)?,
                        };
                        g = if nesterov { (g + (&buf * momentum)?)? } else { buf.clone() };
                        self.m[i] = Some(buf);
                    }
                    var.set(&(w - (g * lr)?)?)?;
                }
                OptimizerConfig::Adam { beta1, beta2, eps, weight_decay, decoupled } => {
                    let mut g = g.clone();
                    let mut w = w.clone();
                    if weight_decay != 0.0 {
                        if decoupled {
                            w = (&w * (1.0 - lr * weight_decay))?;
                        } else {
                            g = (g + (&w * weight_decay)?)?;
                        }
                    }
                    let m = match self.m[i].take() {
                        None => (&g * (1.0 - beta1))?,
                        Some(m) => ((m * beta1)? + (&g * (1.0 - beta1))?)?,
                    };
                    let v = match self.v[i].take() {
                        None => (g.sqr()? * (1.0 - beta2))?,
                        Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                    };
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    // PyTorch: w -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)
                    let denom = ((v.sqrt()? / bc2.sqrt())? + eps)?;
                    let upd = (m.div(&denom)? * (lr / bc1))?;
                    var.set(&(w - upd)?)?;
                    self.m[i] = Some(m);
                    self.v[i] = Some(v);
                }
            }
        }
        Ok(())
    }

    /// State tensors for checkpoints: `opt.m.<name>`, `opt.v.<name>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if let Some(m) = &self.m[i] {
                out.push((format!("opt.m.{name}"), m.clone()));
            }
            if let Some(v) = &self.v[i] {
                out.push((format!("opt.v.{name}"), v.clone()));
            }
        }
        out
    }

    /// Restores [`Optimizer::state`] and the step count.
    pub fn restore(&mut self, tensors: &std::collections::HashMap<String, Tensor>, steps: u64) {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            self.m[i] = tensors.get(&format!("opt.m.{name}")).cloned();
            self.v[i] = tensors.get(&format!("opt.v.{name}")).cloned();
        }
        self.step = steps;
    }
}

/// Learning-rate schedule over the whole run.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` at each epoch in `milestones`.
    MultiStep {
        /// Epochs (0-based) at which the rate drops.
        milestones: Vec<usize>,
        /// Factor per drop.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to 0 over all steps.
    Cosine,
    /// HYDRA's cosine schedule (inspire-group/hydra, `utils/schedules.py` `cosine_schedule`, called
    /// once per epoch by its `train.py`): constant within an epoch, `base · ½(1 + cos(π (e − 1) / E))`
    /// in 0-based epoch `e` of `E = epochs`. The `e − 1` is its code's: the first epoch runs at
    /// `cos(π / E)`'s rate, the second at the full rate, and the last epoch does not approach 0
    /// (E = 5: 0.905, 1, 0.905, 0.655, 0.345 × base).
    HydraCosine {
        /// The run's epochs (`E`); [`Schedule::check`] holds it equal to the run's.
        epochs: usize,
    },
    /// Linear warm-up from 0 to the base rate over the first `warmup` fraction of steps, then
    /// linear decay to 0 (the one-cycle schedule of fast adversarial training).
    OneCycle {
        /// Fraction of the steps spent warming up, in (0, 1).
        warmup: f64,
    },
}

impl Schedule {
    /// Learning rate at global step `step` (0-based) of `total` steps, in epoch `epoch`.
    pub fn lr(&self, base: f64, epoch: usize, step: u64, total: u64) -> f64 {
        let frac = step as f64 / total.max(1) as f64;
        match self {
            Schedule::Constant => base,
            Schedule::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
            Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()),
            Schedule::HydraCosine { epochs } => {
                base * 0.5 * (1.0 + (std::f64::consts::PI * (epoch as f64 - 1.0) / *epochs as f64).cos())
            }
            Schedule::OneCycle { warmup } => {
                if frac < *warmup {
                    base * frac / warmup
                } else {
                    base * (1.0 - frac) / (1.0 - warmup)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Runs `steps` updates on f(w) = Σ w²/2 (gradient w) from w = [1, −2] and returns w.
    fn run(cfg: OptimizerConfig, lr: f64, steps: usize) -> Vec<f64> {
        let w = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = Optimizer::new(cfg, vec![("w".into(), w.clone())]);
        for _ in 0..steps {
            let g = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap().backward().unwrap();
            opt.step(&g, lr).unwrap();
        }
        w.as_tensor().to_vec1::<f64>().unwrap()
    }

    /// The same updates written out for one scalar, following PyTorch's documented algorithms.
    fn scalar_reference(cfg: &OptimizerConfig, lr: f64, steps: usize, mut w: f64) -> f64 {
        let (mut m, mut v) = (0.0, 0.0);
        for t in 1..=steps {
            let mut g = w;
            match *cfg {
                OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                    g += weight_decay * w;
                    m = if t == 1 { g } else { momentum * m + (1.0 - dampening) * g };
                    let d = if nesterov { g + momentum * m } else { m };
                    w -= lr * d;
                }
                OptimizerConfig::Adam { beta1, beta2, eps, weight_decay, decoupled } => {
                    if decoupled {
                        w *= 1.0 - lr * weight_decay;
                    } else {
                        g += weight_decay * w;
                    }
                    m = beta1 * m + (1.0 - beta1) * g;
                    v = beta2 * v + (1.0 - beta2) * g * g;
                    let mh = m / (1.0 - beta1.powi(t as i32));
                    let vh = v / (1.0 - beta2.powi(t as i32));
                    w -= lr * mh / (vh.sqrt() + eps);
                }
            }
        }
        w
    }

    #[test]
    fn updates_follow_pytorch_semantics() {
        for cfg in [
            OptimizerConfig::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 },
            OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.1, nesterov: false, weight_decay: 1e-2 },
            OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 1e-2 },
            OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
            OptimizerConfig::Adam { beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.1, decoupled: false },
            OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, decoupled: true },
        ] {
            let got = run(cfg.clone(), 0.05, 7);
            for (g, w0) in got.iter().zip([1.0, -2.0]) {
                let want = scalar_reference(&cfg, 0.05, 7, w0);
                assert!((g - want).abs() < 1e-12, "{cfg:?}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn optimiser_state_records_no_autograd_graph() {
        // With weight decay the update involves the variable itself; state built from its tracked
        // tensor chained one autograd graph per step (a leak of gigabytes per epoch). Every state
        // tensor and the variable must stay graph-free, whatever the configuration.
        for cfg in [
            OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 1e-2 },
            OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: false },
            OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: true },
        ] {
            let w = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
            let mut opt = Optimizer::new(cfg.clone(), vec![("w".into(), w.clone())]);
            for _ in 0..3 {
                let g = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap().backward().unwrap();
                opt.step(&g, 0.1).unwrap();
            }
            for (name, t) in opt.state() {
                assert!(!t.track_op(), "{cfg:?}: state tensor {name} records an autograd graph");
            }
        }
    }

    /// A milestone outside the run names the epochs it may be; a run of one epoch has none (the
    /// message once read "milestones are epochs 1..0").
    #[test]
    fn milestones_outside_the_run_say_which_epochs_are_inside() {
        let ms = |m: Vec<usize>, epochs| {
            Schedule::MultiStep { milestones: m, gamma: 0.1 }.check(epochs).map_err(|e| e.to_string())
        };
        assert!(ms(vec![1, 3], 4).is_ok());
        assert!(ms(vec![4], 4).unwrap_err().contains("epoch 4 is not inside the run: milestones are epochs 1..=3"));
        assert!(ms(vec![2], 2).unwrap_err().contains("the only one a run of 2 epochs has is epoch 1"));
        assert!(ms(vec![2], 1).unwrap_err().contains("a run of 1 epoch(s) has no epoch to step at"));
        assert!(ms(vec![0], 5).unwrap_err().contains("epoch 0 is not inside the run"));
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.lr(0.1, 3, 50, 100), 0.1);
        let ms = Schedule::MultiStep { milestones: vec![2, 4], gamma: 0.1 };
        assert!(
            (ms.lr(1.0, 1, 0, 10) - 1.0).abs() < 1e-15
                && (ms.lr(1.0, 3, 0, 10) - 0.1).abs() < 1e-15
                && (ms.lr(1.0, 4, 0, 10) - 0.01).abs() < 1e-15
        );
        assert!((Schedule::Cosine.lr(1.0, 0, 50, 100) - 0.5).abs() < 1e-12);
        assert_eq!(Schedule::Cosine.lr(1.0, 0, 0, 100), 1.0);
        // HYDRA's per-epoch values for 5 epochs, from its formula evaluated by hand:
        // ½(1 + cos(π·k/5)) for k = −1, 0, 1, 2, 3, the same within each epoch.
        let hc = Schedule::HydraCosine { epochs: 5 };
        let want = [0.904_508_497, 1.0, 0.904_508_497, 0.654_508_497, 0.345_491_503];
        for (e, w) in want.iter().enumerate() {
            for step in [0, 7, 19] {
                assert!((hc.lr(1.0, e, 20 * e as u64 + step, 100) - w).abs() < 1e-9, "epoch {e}");
            }
        }
        assert!(hc.check(5).is_ok() && hc.check(4).is_err());
        let oc = Schedule::OneCycle { warmup: 0.25 };
        assert!((oc.lr(1.0, 0, 25, 100) - 1.0).abs() < 1e-12 && (oc.lr(1.0, 0, 10, 100) - 0.4).abs() < 1e-12);
        assert!((oc.lr(1.0, 0, 100, 100)).abs() < 1e-12);
    }
}
