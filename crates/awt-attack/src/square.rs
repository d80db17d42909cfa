//! The Square attack, ℓ∞ (Andriushchenko et al., ECCV 2020): a score-based random search that never
//! reads a gradient, so masked or obfuscated gradients cannot fool it. From vertical stripes of ±ε,
//! each query changes one random square (all channels, a random sign per channel) to the opposite
//! side of the ε-box and keeps the change when the margin `z_y − max_{j≠y} z_j` falls (or the point
//! is misclassified). The square's side follows the schedule of p, the fraction of pixels changed
//! (p₀ = 0.8, halved at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000). Every random draw
//! comes from the example's own stream, so results do not depend on the batch.

use awt_base::{Classifier, Rng};
use candle_core::{D, DType, Tensor};

use crate::core::{Attack, Outcome, validate};
use crate::error::{AttackError, finite_logits, invalid};

/// Square settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Square {
    /// Radius in pixel units.
    pub eps: f64,
    /// Queries after the initial one (5000 in AutoAttack).
    pub queries: usize,
    /// Initial fraction of pixels changed per query (0.8).
    pub p_init: f64,
    /// Run seed; each example draws from `Rng::new(seed).derive("square").fork(id)`.
    pub seed: u64,
}

impl Square {
    /// AutoAttack's standard settings: 5000 queries, p₀ = 0.8.
    pub fn standard(eps: f64, seed: u64) -> Square {
        Square { eps, queries: 5000, p_init: 0.8, seed }
    }

    /// The fraction of pixels a query changes at query `it` (the original schedule for 10,000 queries).
    fn p(&self, it: usize) -> f64 {
        let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000].iter().filter(|&&q| it > q).count();
        self.p_init / f64::powi(2.0, halvings as i32)
    }
}

/// `z_y − max_{j≠y} z_j` per example (≤ 0: misclassified or tied).
fn margins(logits: &Tensor, y: &[u32]) -> Result<Vec<f64>, AttackError> {
    let z = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    Ok(z.iter()
        .zip(y)
        .map(|(r, &c)| {
            let other =
                r.iter().enumerate().filter(|(j, _)| *j != c as usize).fold(f64::NEG_INFINITY, |m, (_, v)| m.max(*v));
            r[c as usize] - other
        })
        .collect())
}

impl Attack for Square {
    fn name(&self) -> String {
        format!("square-{}", self.queries)
    }

    fn gradient_free(&self) -> bool {
        true
    }

    fn perturb(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        ids: &[u64],
    ) -> Result<Outcome, AttackError> {
        if target.is_some() {
            return Err(invalid("this Square attack is untargeted"));
        }
        validate(model, x, y, None, ids, self.eps)?;
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return Err(invalid(format!("p_init must be in (0, 1], got {}", self.p_init)));
        }
        let (n, dtype) = (x.dim(0)?, x.dtype());
        let (c, h, w) = match x.dims() {
            [_, c, h, w] => (*c, *h, *w),
            [_, f] => (1, 1, *f),
            other => return Err(invalid(format!("Square needs (n, c, h, w) or (n, features) inputs, got {other:?}"))),
        };
        let feats = c * h * w;
        let eps = self.eps;
        let orig: Vec<Vec<f64>> = x.reshape((n, ()))?.to_dtype(DType::F64)?.to_vec2()?;
        let yv = y.to_vec1::<u32>()?;
        let root = Rng::new(self.seed).derive("square");
        let mut streams: Vec<Rng> = ids.iter().map(|&id| root.fork(id)).collect();
        // Rows of `feats` values each, flat: the batch a query evaluates is built in place, in f64, and
        // converted to the model's dtype once (each candidate a copy of its best point, one square changed).
        let rows_tensor = |flat: &[f64]| -> Result<Tensor, AttackError> {
            let mut shape = x.dims().to_vec();
            shape[0] = flat.len() / feats.max(1);
            Ok(Tensor::from_slice(flat, shape.as_slice(), x.device())?.to_dtype(dtype)?)
        };
        // Start: vertical stripes, one sign per (channel, column).
        let mut best: Vec<f64> = Vec::with_capacity(n * feats);
        for (o, r) in orig.iter().zip(streams.iter_mut()) {
            let signs: Vec<f64> = (0..c * w).map(|_| if r.uniform() < 0.5 { -1.0 } else { 1.0 }).collect();
            best.extend((0..feats).map(|e| (o[e] + eps * signs[(e / (h * w)) * w + e % w]).clamp(0.0, 1.0)));
        }
        let logits = model.predict(&rows_tensor(&best)?)?;
        finite_logits(&logits)?;
        let mut margin = margins(&logits, &yv)?;
        for it in 0..self.queries {
            let alive: Vec<usize> = (0..n).filter(|&i| margin[i] > 0.0).collect();
            if alive.is_empty() {
                break;
            }
            let s = ((self.p(it) * feats as f64 / c as f64).sqrt().round() as usize).clamp(1, h.min(w));
            let mut cand: Vec<f64> = Vec::with_capacity(alive.len() * feats);
            for &i in &alive {
                let r = &mut streams[i];
                let vh = r.below((h - s).max(1) as u64) as usize;
                let vw = r.below((w - s).max(1) as u64) as usize;
                let start = cand.len();
                cand.extend_from_slice(&best[i * feats..(i + 1) * feats]);
                let xn = &mut cand[start..];
                for ch in 0..c {
                    let sign = if r.uniform() < 0.5 { -1.0 } else { 1.0 };
                    for row in vh..vh + s {
                        for col in vw..vw + s {
                            let e = (ch * h + row) * w + col;
                            let o = orig[i][e];
                            xn[e] = (xn[e] + 2.0 * eps * sign).clamp(o - eps, o + eps).clamp(0.0, 1.0);
                        }
                    }
                }
            }
            let logits = model.predict(&rows_tensor(&cand)?)?;
            finite_logits(&logits)?;
            let m = margins(&logits, &alive.iter().map(|&i| yv[i]).collect::<Vec<_>>())?;
            for (j, &i) in alive.iter().enumerate() {
                if m[j] < margin[i] || m[j] <= 0.0 {
                    margin[i] = m[j];
                    best[i * feats..(i + 1) * feats].copy_from_slice(&cand[j * feats..(j + 1) * feats]);
                }
            }
        }
        let adv = rows_tensor(&best)?;
        let pred = model.predict(&adv)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let fooled = pred.iter().zip(&yv).map(|(p, y)| p != y).collect();
        Ok(Outcome { adv, fooled, loss: margin.iter().map(|&m| -(m as f32)).collect() })
    }
}
