//! The narrow interface attacks use: logits, and the gradient of a per-example loss with respect
//! to the input. Any candle `Module` qualifies through [`Autograd`]; a network that knows its own
//! structure (awt-nets' `Net`) overrides the gradient with an explicit backward pass that skips the
//! weight gradients autograd would compute.

use candle_core::{Module, Result, Tensor, Var};

/// A differentiable map from inputs (batch first) to logits `(batch, classes)`.
pub trait Classifier {
    /// Logits for `x`.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;

    /// Logits for `x` where no gradient is wanted (an attack's predictions and loss checks, Square's
    /// queries, evaluation). The default is [`Classifier::logits`], detached; a model may compute
    /// them without building a graph (awt-nets' `Net` does, on the CPU).
    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.logits(x)?.detach())
    }

    /// Logits at `x`, the per-example loss `loss(logits): (n,)`, and `∂(Σᵢ lossᵢ)/∂x`.
    /// The default uses candle's autograd.
    fn loss_and_input_grad(
        &self,
        x: &Tensor,
        loss: &dyn Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let xv = Var::from_tensor(&x.detach())?;
        let logits = self.logits(xv.as_tensor())?;
        let l = loss(&logits)?;
        let g = l.sum_all()?.backward()?;
        let grad = match g.get(xv.as_tensor()) {
            Some(g) => g.clone(),
            None => x.zeros_like()?,
        };
        Ok((logits.detach(), l.detach(), grad))
    }
}

/// Any candle module as a [`Classifier`], differentiated by autograd.
pub struct Autograd<'a>(pub &'a dyn Module);

impl Classifier for Autograd<'_> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
}
