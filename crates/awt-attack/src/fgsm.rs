//! FGSM (Goodfellow et al. 2015): one signed-gradient step of size ε, clipped to [0, 1].
//! Written independently of PGD so that "PGD with one step of size ε and no random start equals
//! FGSM" is a real check of PGD's step and projection.

use awt_base::Classifier;
use candle_core::Tensor;

use crate::core::{Attack, Outcome, validate};
use crate::error::AttackError;
use crate::loss::{LossKind, per_example_loss};

/// FGSM settings (ℓ∞).
#[derive(Clone, Debug, PartialEq)]
pub struct Fgsm {
    /// Radius in pixel units.
    pub eps: f64,
    /// Loss to ascend.
    pub loss: LossKind,
}

impl Attack for Fgsm {
    fn name(&self) -> String {
        "fgsm".into()
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
        let (logits, l0, gx) = model.loss_and_input_grad(x, &|z: &Tensor| per_example_loss(z, y, target, self.loss))?;
        let x1 = (x + (gx.sign()? * self.eps)?)?.clamp(0.0, 1.0)?;
        // Same selection rule as every attack here: keep x1 if it fools or raises the loss.
        let pred = |lg: &Tensor| -> Result<Vec<u32>, AttackError> { Ok(lg.argmax(1)?.to_vec1::<u32>()?) };
        let logits1 = model.predict(&x1)?;
        let l1 =
            per_example_loss(&logits1, y, target, self.loss)?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let l0 = l0.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let goal: Vec<u32> = target.unwrap_or(y).to_vec1::<u32>()?;
        let fooled_at = |p: &[u32]| -> Vec<bool> {
            p.iter().zip(&goal).map(|(p, g)| if target.is_some() { p == g } else { p != g }).collect()
        };
        let (f0, f1) = (fooled_at(&pred(&logits)?), fooled_at(&pred(&logits1)?));
        let n = goal.len();
        let mut take = vec![0u8; n];
        let mut fooled = vec![false; n];
        let mut loss = vec![0f32; n];
        for i in 0..n {
            let use1 = !f0[i] && (f1[i] || l1[i] > l0[i]);
            take[i] = u8::from(use1);
            fooled[i] = f0[i] || f1[i];
            loss[i] = if use1 { l1[i] } else { l0[i] };
        }
        let adv = crate::core::select_rows(&take, &x1, x)?;
        Ok(Outcome { adv, fooled, loss })
    }
}
