//! The kernel's diagonal: each example's kernel with itself, Θ(x_i, x_i), in O(n) time and memory
//! where the whole kernel is O(n²) — from the same per-layer sides as [`crate::structured`], taken
//! at the pairs (i, i) only.

use awt_base::Stage;
use awt_base::product::matmul;
use candle_core::Tensor;

use crate::Kind;
use crate::error::NtkError;
use crate::ops::per_example_gram;
use crate::structured::{LayerSide, side};

/// The kernel's diagonal blocks Θ(x_i, x_i), `(n, k, k)`, or with [`Kind::Trace`] their traces
/// `(n,)`: each example's kernel with itself, in O(n) time and memory where the whole kernel is
/// O(n²). The terms of [`structured`](crate::structured()) at the pairs (i, i) only: per example,
/// a dense linear layer's `(a_i·a_i + 1) D_i D_iᵀ`, a masked one's `D_i diag(Σ_q M_pq a_iq² + 1)
/// D_iᵀ`, a convolution's `g_i (g_i ⊙ M)ᵀ` plus its bias term. Differentiable like the whole kernel.
pub fn structured_diagonal(stages: &[Stage], x: &Tensor, kind: Kind) -> Result<Tensor, NtkError> {
    let (sides, n, k) = side(stages, stages, stages, x)?;
    let mut total: Option<Tensor> = None;
    for l in &sides {
        let t = match kind {
            Kind::Full => diagonal_term(l, n, k)?,
            Kind::Trace => diagonal_trace_term(l, n, k)?,
        };
        total = Some(match total {
            None => t,
            Some(acc) => (acc + t)?,
        });
    }
    Ok(total.expect("at least one weighted stage"))
}

/// One weighted stage's diagonal traces, `(n,)`: the blocks' traces without the blocks, by sums of
/// squares (`Σ_c Σ_p D[i,c,p]² w_ip` for a linear layer, `Σ_c ‖g_ic ⊙ M‖²` for a convolution),
/// O(n·k·p) where the blocks take a product per example.
fn diagonal_trace_term(l: &LayerSide, n: usize, k: usize) -> candle_core::Result<Tensor> {
    let sum_sq = |t: &Tensor, w: Option<&Tensor>| -> candle_core::Result<Tensor> {
        let p = t.elem_count() / (n * k).max(1);
        let sq = t.reshape((n, k, p))?.sqr()?;
        let sq = match w {
            Some(w) => sq.broadcast_mul(w)?,
            None => sq,
        };
        sq.sum((1, 2))
    };
    match l {
        LayerSide::Linear { a, d, mask, .. } => match mask {
            None => sum_sq(d, None)? * (a.sqr()?.sum(1)? + 1.0)?,
            Some(m) => sum_sq(d, Some(&self_input_gram(a, m)?.unsqueeze(1)?)),
        },
        LayerSide::Conv { g, db, mask } => {
            let w = match mask {
                Some(m) => sum_sq(g, Some(&m.reshape((1, 1, g.dim(1)?))?))?,
                None => sum_sq(g, None)?,
            };
            match db {
                Some(b) => w + sum_sq(b, None)?,
                None => Ok(w),
            }
        }
    }
}

/// A masked linear layer's input Gram of each example with itself, plus one (the bias):
/// `G[i,i,p] + 1 = Σ_q M_pq a_iq² + 1`, `(n, out)`, weighting each output unit.
fn self_input_gram(a: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
    matmul(&a.sqr()?, &m.t()?)? + 1.0
}

/// One weighted stage's diagonal blocks, `(n, k, k)`.
fn diagonal_term(l: &LayerSide, n: usize, k: usize) -> candle_core::Result<Tensor> {
    // Σ_p u[i,c,p] v[i,c',p] per example: (n, k, p), (n, k, p) → (n, k, k).
    let per_example = per_example_gram;
    match l {
        LayerSide::Linear { a, d, mask, .. } => {
            let out = d.dim(1)?;
            let dd = d.reshape((n, k, out))?;
            match mask {
                None => {
                    let s = (a.sqr()?.sum_keepdim(1)? + 1.0)?.reshape((n, 1, 1))?;
                    per_example(&dd, &dd)?.broadcast_mul(&s)
                }
                Some(m) => per_example(&dd.broadcast_mul(&self_input_gram(a, m)?.unsqueeze(1)?)?, &dd),
            }
        }
        LayerSide::Conv { g, db, mask } => {
            let p = g.dim(1)?;
            let gg = g.reshape((n, k, p))?;
            // A mask multiplies one side (M = M ⊙ M for a 0/1 mask).
            let w = match mask {
                Some(m) => per_example(&gg.broadcast_mul(&m.reshape((1, 1, p))?)?, &gg)?,
                None => per_example(&gg, &gg)?,
            };
            match db {
                Some(b) => {
                    let bb = b.reshape((n, k, b.dim(1)?))?;
                    w + per_example(&bb, &bb)?
                }
                None => Ok(w),
            }
        }
    }
}
