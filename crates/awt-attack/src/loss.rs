//! Per-example attack losses: cross-entropy, CW margin, and the DLR loss of Croce & Hein 2020.
//! Every loss is written so that the attacker *maximises* it, targeted or not.

use candle_core::{D, DType, Result, Tensor};

/// Which loss the attack ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Cross-entropy of the true class (targeted: minus cross-entropy of the target class).
    CrossEntropy,
    /// Carlini–Wagner margin `max_{i≠y} z_i − z_y` (targeted: `z_t − max_{i≠t} z_i`).
    CwMargin,
    /// Difference of logits ratio, `−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)` (targeted:
    /// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`); needs ≥ 3 (targeted ≥ 4) classes.
    Dlr,
}

impl LossKind {
    /// `ce`, `cw` or `dlr`.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "ce",
            LossKind::CwMargin => "cw",
            LossKind::Dlr => "dlr",
        }
    }
}

/// One-hot `(n, k)` of `labels: (n,)` in `dtype`.
fn one_hot(labels: &Tensor, k: usize, dtype: DType) -> Result<Tensor> {
    let n = labels.dim(0)?;
    let classes = Tensor::arange(0u32, k as u32, labels.device())?.unsqueeze(0)?.broadcast_as((n, k))?;
    classes.eq(&labels.unsqueeze(1)?.broadcast_as((n, k))?)?.to_dtype(dtype)
}

/// `z[i, labels[i]]` as `(n,)`.
fn pick(z: &Tensor, labels: &Tensor) -> Result<Tensor> {
    z.gather(&labels.unsqueeze(1)?.contiguous()?, 1)?.squeeze(1)
}

/// max over classes other than `labels`: `(n,)`.
fn max_other(z: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (_, k) = z.dims2()?;
    let oh = one_hot(labels, k, z.dtype())?;
    // Push the excluded class far below every other logit; the offset is a constant (no gradient).
    let big = (z.abs()?.max_keepdim(1)?.detach() + 1e4)?;
    z.broadcast_sub(&oh.broadcast_mul(&big)?.affine(2.0, 0.0)?)?.max(D::Minus1)
}

/// The loss each example's attacker maximises, `(n,)`. `logits: (n, k)`, `labels: (n,)` u32,
/// `target: (n,)` u32 for targeted attacks.
pub fn per_example_loss(logits: &Tensor, labels: &Tensor, target: Option<&Tensor>, kind: LossKind) -> Result<Tensor> {
    match (kind, target) {
        (LossKind::CrossEntropy, None) => {
            let lsm = candle_core::Tensor::log_sum_exp(logits, D::Minus1)?;
            lsm.sub(&pick(logits, labels)?)
        }
        (LossKind::CrossEntropy, Some(t)) => {
            let lsm = candle_core::Tensor::log_sum_exp(logits, D::Minus1)?;
            pick(logits, t)?.sub(&lsm)
        }
        (LossKind::CwMargin, None) => max_other(logits, labels)?.sub(&pick(logits, labels)?),
        (LossKind::CwMargin, Some(t)) => pick(logits, t)?.sub(&max_other(logits, t)?),
        (LossKind::Dlr, target) => {
            let sorted = logits.sort_last_dim(false)?.0; // descending
            let z1 = sorted.narrow(1, 0, 1)?.squeeze(1)?;
            let z3 = sorted.narrow(1, 2, 1)?.squeeze(1)?;
            let zy = pick(logits, labels)?;
            match target {
                None => {
                    let num = zy.sub(&max_other(logits, labels)?)?;
                    let den = (z1.sub(&z3)? + 1e-12)?;
                    num.div(&den)?.neg()
                }
                Some(t) => {
                    let z4 = sorted.narrow(1, 3, 1)?.squeeze(1)?;
                    let num = zy.sub(&pick(logits, t)?)?;
                    let den = (z1.sub(&((z3 + z4)? * 0.5)?)? + 1e-12)?;
                    num.div(&den)?.neg()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn check(kind: LossKind, target: Option<u32>, expect: f64) {
        let z = Tensor::new(&[[2.0f64, 0.5, -1.0, 3.0]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let t = target.map(|t| Tensor::new(&[t], &Device::Cpu).unwrap());
        let l = per_example_loss(&z, &y, t.as_ref(), kind).unwrap().to_vec1::<f64>().unwrap()[0];
        assert!((l - expect).abs() < 1e-9, "{kind:?} {target:?}: {l} vs {expect}");
    }

    #[test]
    fn losses_match_their_definitions() {
        let lse = (2f64.exp() + 0.5f64.exp() + (-1f64).exp() + 3f64.exp()).ln();
        check(LossKind::CrossEntropy, None, lse - 2.0);
        check(LossKind::CrossEntropy, Some(1), 0.5 - lse);
        check(LossKind::CwMargin, None, 3.0 - 2.0);
        check(LossKind::CwMargin, Some(1), 0.5 - 3.0);
        // sorted: 3, 2, 0.5, -1 → π1 = 3, π3 = 0.5, π4 = -1
        check(LossKind::Dlr, None, -(2.0 - 3.0) / (3.0 - 0.5 + 1e-12));
        check(LossKind::Dlr, Some(1), -(2.0 - 0.5) / (3.0 - (0.5 - 1.0) / 2.0 + 1e-12));
    }
}
