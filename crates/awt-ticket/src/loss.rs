//! The NTT / AWT loss on one batch and the kernel distance used to judge a ticket.

use std::collections::BTreeMap;

use awt_base::Staged;
use awt_nets::Net;
use awt_ntk::{Kind, metrics, structured};
use candle_core::{Module, Tensor};

use crate::config::SearchConfig;
use crate::error::SearchError;

/// The three terms of the NTT/AWT loss on one batch of `inputs` (method.md), with the kernels and
/// outputs they compare. Teacher quantities are constants (detached).
pub struct LossTerms {
    /// λ_ker · mean((Θ_s − Θ_T)²) over the two halves of the batch.
    pub kernel_term: Tensor,
    /// mean((f_s − f_T)²).
    pub output_term: Tensor,
    /// (λ_l2 / d) Σ ‖m ⊙ W_s‖².
    pub l2_term: Tensor,
    /// Student kernel.
    pub ks: Tensor,
    /// Teacher kernel (detached).
    pub kt: Tensor,
    /// Student outputs.
    pub fs: Tensor,
    /// Teacher outputs (detached).
    pub ft: Tensor,
}

/// The search loss on `inputs` (already adversarial for AWT), differentiable in the student's weights.
pub fn loss_terms(
    student: &Net,
    teacher: &Net,
    inputs: &Tensor,
    masks: &BTreeMap<String, Tensor>,
    cfg: &SearchConfig,
) -> Result<LossTerms, SearchError> {
    let half = inputs.dim(0)? / 2;
    let (x1, x2) = (inputs.narrow(0, 0, half)?, inputs.narrow(0, half, half)?);
    let kt = structured(&teacher.stages(), &x1, &x2, Kind::Full)?.detach();
    let ft = teacher.forward(inputs)?.detach();
    let ks = structured(&student.stages(), &x1, &x2, Kind::Full)?;
    let fs = student.forward(inputs)?;
    let kernel_term = ((&ks - &kt)?.sqr()?.mean_all()? * cfg.lambda_ker)?;
    let output_term = (&fs - &ft)?.sqr()?.mean_all()?;
    let mut l2 = Tensor::zeros((), student.dtype(), inputs.device())?;
    for (k, w) in student.weights() {
        let w = w.as_tensor();
        let w = match masks.get(k) {
            Some(m) => w.mul(m)?,
            None => w.clone(),
        };
        l2 = (l2 + w.sqr()?.sum_all()?)?;
    }
    let l2_term = (l2 * (cfg.lambda_l2 / cfg.density.get()))?;
    Ok(LossTerms { kernel_term, output_term, l2_term, ks, kt, fs, ft })
}

/// Relative kernel distance of `student` to `teacher` on `(x1, x2)` (for held-out checks).
pub fn kernel_distance(student: &Net, teacher: &Net, x1: &Tensor, x2: &Tensor) -> Result<f64, SearchError> {
    let ks = structured(&student.stages(), x1, x2, Kind::Full)?;
    let kt = structured(&teacher.stages(), x1, x2, Kind::Full)?;
    Ok(metrics::relative_distance(&ks, &kt)?)
}
