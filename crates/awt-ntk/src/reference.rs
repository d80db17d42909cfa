//! The oracle: Jacobian rows from autograd, one backward per (example, class), contracted into
//! the kernel. Independent of the structured implementation (it never looks at the layers).

use candle_core::{Tensor, Var};

use crate::Kind;
use crate::error::NtkError;

/// Jacobian `(n·k, P)` of `f` at the examples of `x`, columns in the order of `params`
/// (each flattened row-major). `f` maps a batch to logits `(batch, k)`.
fn jacobian(
    f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    params: &[Var],
    x: &Tensor,
) -> Result<Tensor, NtkError> {
    let n = x.dim(0)?;
    let mut rows = Vec::new();
    for i in 0..n {
        let out = f(&x.narrow(0, i, 1)?)?;
        let k = out.dim(1)?;
        for c in 0..k {
            let g = out.get(0)?.get(c)?.backward()?;
            let parts: Vec<Tensor> = params
                .iter()
                .map(|p| match g.get(p.as_tensor()) {
                    Some(t) => t.flatten_all(),
                    None => p.as_tensor().zeros_like()?.flatten_all(),
                })
                .collect::<candle_core::Result<_>>()?;
            rows.push(Tensor::cat(&parts, 0)?);
        }
    }
    Ok(Tensor::stack(&rows, 0)?)
}

/// Θ(X1, X2) from autograd Jacobians over `params` (for a masked net, pruned weights have zero
/// gradient, so the sum runs over kept weights only). Costs (n1 + n2)·k backward passes.
pub fn reference(
    f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    params: &[Var],
    x1: &Tensor,
    x2: &Tensor,
    kind: Kind,
) -> Result<Tensor, NtkError> {
    let j1 = jacobian(f, params, x1)?;
    let j2 = if x1.same_shape_storage_hint(x2) { j1.clone() } else { jacobian(f, params, x2)? };
    #[allow(clippy::disallowed_methods)] // independent of the structured kernel's products
    let full = j1.matmul(&j2.t()?)?;
    Ok(match kind {
        Kind::Full => full,
        Kind::Trace => crate::structured::trace_full(&full, x1.dim(0)?, x2.dim(0)?)?,
    })
}

trait SameInput {
    fn same_shape_storage_hint(&self, other: &Tensor) -> bool;
}

impl SameInput for Tensor {
    /// True when both are the same tensor (same id): X1 = X2 needs one Jacobian.
    fn same_shape_storage_hint(&self, other: &Tensor) -> bool {
        self.id() == other.id()
    }
}
