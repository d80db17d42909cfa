//! The NTK's custom CPU ops, each with a hand-written backward checked against an autograd
//! formulation: kernel-block scaling and accumulation ([`blocks`]), and the masked linear layer's
//! kernel contraction and input Gram ([`masked`]), the masked convolution's per-example
//! gradients at the kept weights ([`conv`]), and the same from the signals after a ReLU and a
//! max-pool ([`pooled`]), and the Gram matrix of a batch with itself over half the products
//! and the per-example Grams of the kernel's diagonal ([`gram`]).
//!
//! The kernel reaches them only through the functions below, which take the op on the CPU
//! ([`awt_base::device::cpu_kernels`]) and the same quantity from plain candle ops on every other
//! device (and inside [`awt_base::device::generic_path`]); the two are tested equal, gradients
//! included.

mod blocks;
mod conv;
mod gram;
mod masked;
mod pooled;

use awt_base::device::cpu_kernels;
use awt_base::product::matmul;
use candle_core::{Result, Tensor};

pub(crate) use blocks::{AddBlockDiag, BlockDiag, ScaleBlocksAdd};
pub(crate) use conv::{KeptConvGrad, PerExampleGrad};
pub(crate) use gram::{Gram, PerExampleGram};
pub(crate) use masked::{MaskedGram, MaskedPair};
pub(crate) use pooled::PooledKeptConvGrad;

/// `acc + kron(s, I_k)`: `acc: (n1·k, n2·k)`, `s: (n1, n2)`.
pub(crate) fn add_block_diag(acc: &Tensor, s: &Tensor, k: usize) -> Result<Tensor> {
    if cpu_kernels(acc) {
        return acc.apply_op2(s, AddBlockDiag { k });
    }
    acc + block_diag(s, k)?
}

/// `kron(s, I_k)`, `(n1·k, n2·k)`: [`add_block_diag`] onto zeros.
pub(crate) fn block_diag(s: &Tensor, k: usize) -> Result<Tensor> {
    if cpu_kernels(s) {
        return s.contiguous()?.apply_op1(BlockDiag { k });
    }
    let (n1, n2) = s.dims2()?;
    let eye = Tensor::eye(k, s.dtype(), s.device())?.reshape((1, k, 1, k))?;
    s.reshape((n1, 1, n2, 1))?.broadcast_mul(&eye)?.reshape((n1 * k, n2 * k))
}

/// `a·aᵀ` of a 2-D `a`: by [`Gram`] (from the diagonal on in bands over the threads, the plain
/// product's bits) where its inner dimension makes that pay ([`gram::MIN_INNER`]), else one plain
/// product.
pub(crate) fn gram(a: &Tensor) -> Result<Tensor> {
    if cpu_kernels(a) && a.dim(1)? >= gram::MIN_INNER {
        return a.contiguous()?.apply_op1(Gram);
    }
    matmul(a, &a.t()?)
}

/// Per example, `u_i · v_iᵀ` for `u, v: (n, k, p)` → `(n, k, k)` ([`PerExampleGram`]).
pub(crate) fn per_example_gram(u: &Tensor, v: &Tensor) -> Result<Tensor> {
    if cpu_kernels(u) {
        return u.contiguous()?.apply_op2(&v.contiguous()?, PerExampleGram);
    }
    matmul(u, &v.transpose(1, 2)?)
}

/// `acc + dd ⊙ (s ⊗ 1_{k×k})`: each k×k block of `dd: (n1·k, n2·k)` scaled by `s[i, j]`.
pub(crate) fn scale_blocks_add(acc: &Tensor, dd: &Tensor, s: &Tensor, k: usize) -> Result<Tensor> {
    if cpu_kernels(acc) {
        return acc.apply_op3(dd, s, ScaleBlocksAdd { k });
    }
    let (n1, n2) = s.dims2()?;
    acc + dd.reshape((n1, k, n2, k))?.broadcast_mul(&s.reshape((n1, 1, n2, 1))?)?.reshape((n1 * k, n2 * k))?
}

/// `Θ[(i,c),(j,c')] = Σ_p d1[i,c,p] g[i,j,p] d2[j,c',p]` ([`MaskedPair`]), `(n1·k, n2·k)`.
pub(crate) fn masked_pair(d1: &Tensor, d2: &Tensor, g: &Tensor) -> Result<Tensor> {
    if cpu_kernels(d1) {
        return d1.contiguous()?.apply_op3(&d2.contiguous()?, &g.contiguous()?, MaskedPair);
    }
    let (n1, k, p) = d1.dims3()?;
    let n2 = d2.dim(0)?;
    // e[i, (j, c'), p] = g[i,j,p] d2[j,c',p]; then one batched product per example i.
    let e = g.reshape((n1, n2, 1, p))?.broadcast_mul(&d2.reshape((1, n2, k, p))?)?.reshape((n1, n2 * k, p))?;
    matmul(d1, &e.transpose(1, 2)?)?.reshape((n1 * k, n2 * k))
}

/// `G[i,j,p] = Σ_q M[p,q] a1[i,q] a2[j,q]` ([`MaskedGram`]), `(n1, n2, p)`; `G + 1` with `plus_one`.
pub(crate) fn masked_gram(a1: &Tensor, a2: &Tensor, m: &Tensor, plus_one: bool) -> Result<Tensor> {
    if cpu_kernels(a1) {
        let op = MaskedGram::new(m)?;
        let op = if plus_one { op.plus_one() } else { op };
        return a1.contiguous()?.apply_op2(&a2.contiguous()?, op);
    }
    let (n1, n2, q) = (a1.dim(0)?, a2.dim(0)?, a1.dim(1)?);
    let aa = a1.unsqueeze(1)?.broadcast_mul(&a2.unsqueeze(0)?)?.reshape((n1 * n2, q))?;
    let g = matmul(&aa, &m.t()?)?.reshape((n1, n2, m.dim(0)?))?;
    if plus_one { g + 1.0 } else { Ok(g) }
}

/// Per-example weight gradients of a convolution, `d: (n, r, L)`, `patches: (n, Q, L)` →
/// `(n, r, Q)` ([`PerExampleGrad`]).
pub(crate) fn per_example_grad(d: &Tensor, patches: &Tensor) -> Result<Tensor> {
    if cpu_kernels(d) {
        return d.contiguous()?.apply_op2(&patches.contiguous()?, PerExampleGrad);
    }
    matmul(d, &patches.transpose(1, 2)?)
}

/// A masked convolution's per-example weight gradients at the kept weights, then its bias
/// gradients ([`KeptConvGrad`]): `d: (n·k, o, oh, ow)`, `patches: (n, Q, oh·ow)` →
/// `(n·k, kept + o)`, kept weights in row-major order.
pub(crate) fn kept_conv_grad(d: &Tensor, patches: &Tensor, m: &Tensor) -> Result<Tensor> {
    if cpu_kernels(d) {
        return d.contiguous()?.apply_op2(&patches.contiguous()?, KeptConvGrad::new(m)?);
    }
    let (nk, o, oh, ow) = d.dims4()?;
    let (n, q, l) = (patches.dim(0)?, patches.dim(1)?, oh * ow);
    let kept: Vec<u32> = awt_base::signal::mask_values(m)?
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, _)| i as u32)
        .collect();
    let n_kept = kept.len();
    let idx = Tensor::from_vec(kept, n_kept, d.device())?;
    let dense = matmul(&d.reshape((n, nk / n.max(1) * o, l))?, &patches.transpose(1, 2)?)?.reshape((nk, o * q))?;
    let bias = d.reshape((nk, o, l))?.sum(2)?;
    Tensor::cat(&[&dense.index_select(&idx, 1)?, &bias], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awt_base::device::generic_path;
    use awt_base::testing::{edge_mask, max_diff, rand};
    use candle_core::{DType, Var};

    /// Runs `f` on the CPU ops and on the generic path; the values and the gradients of ⟨f, r⟩ with
    /// respect to every input agree.
    fn same_both_ways(inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Result<Tensor>, tol: f64) {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let fast = f(&ts).unwrap();
        let generic = generic_path(|| f(&ts)).unwrap();
        assert!(max_diff(&fast, &generic) < tol, "values differ by {}", max_diff(&fast, &generic));
        let r = rand(fast.dims(), 99).to_dtype(fast.dtype()).unwrap();
        let gf = fast.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let gg = generic_path(|| generic.mul(&r).unwrap().sum_all().unwrap().backward()).unwrap();
        for (i, v) in vars.iter().enumerate() {
            let (a, b) = (gf.get(v.as_tensor()).unwrap(), gg.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, b) < tol, "gradient {i} differs by {}", max_diff(a, b));
        }
    }

    #[test]
    fn every_op_equals_its_device_generic_formulation_with_gradients() {
        let (n1, n2, k, p, q) = (3, 4, 2, 5, 7);
        same_both_ways(&[rand(&[n1 * k, n2 * k], 1), rand(&[n1, n2], 2)], &|t| add_block_diag(&t[0], &t[1], k), 1e-14);
        same_both_ways(&[rand(&[n1, n2], 21)], &|t| block_diag(&t[0], k), 1e-14);
        // Past PARALLEL_ENTRIES (a block row per task); the gradients of `s` sum k² terms in another order.
        let (m1, m2, kk) = (30, 25, 10);
        same_both_ways(
            &[rand(&[m1 * kk, m2 * kk], 22), rand(&[m1 * kk, m2 * kk], 23), rand(&[m1, m2], 24)],
            &|t| scale_blocks_add(&t[0], &t[1], &t[2], kk),
            1e-12,
        );
        same_both_ways(
            &[rand(&[m1 * kk, m2 * kk], 25), rand(&[m1, m2], 26)],
            &|t| add_block_diag(&t[0], &t[1], kk),
            1e-12,
        );
        same_both_ways(&[rand(&[m1, m2], 27)], &|t| block_diag(&t[0], kk), 1e-12);
        same_both_ways(&[rand(&[130, gram::MIN_INNER], 20)], &|t| gram(&t[0]), 1e-11);
        // Rows shorter and longer than the dot product's lanes, with a remainder.
        for p in [5, 16, 37] {
            same_both_ways(&[rand(&[n1, k, p], 28), rand(&[n1, k, p], 29)], &|t| per_example_gram(&t[0], &t[1]), 1e-13);
        }
        same_both_ways(
            &[rand(&[n1 * k, n2 * k], 3), rand(&[n1 * k, n2 * k], 4), rand(&[n1, n2], 5)],
            &|t| scale_blocks_add(&t[0], &t[1], &t[2], k),
            1e-14,
        );
        same_both_ways(
            &[rand(&[n1, k, p], 6), rand(&[n2, k, p], 7), rand(&[n1, n2, p], 8)],
            &|t| masked_pair(&t[0], &t[1], &t[2]),
            1e-13,
        );
        let m = edge_mask(p, q, 0.4, 9);
        same_both_ways(&[rand(&[n1, q], 10), rand(&[n2, q], 11)], &|t| masked_gram(&t[0], &t[1], &m, true), 1e-13);
        let (o, l) = (4, 6);
        same_both_ways(&[rand(&[n1, k * o, l], 12), rand(&[n1, q, l], 13)], &|t| per_example_grad(&t[0], &t[1]), 1e-13);
        let m = edge_mask(o, q, 0.4, 14);
        same_both_ways(
            &[rand(&[n1 * k, o, 2, l / 2], 15), rand(&[n1, q, l], 16)],
            &|t| kept_conv_grad(&t[0], &t[1], &m),
            1e-13,
        );
        // In f32 too (the search's dtype).
        let f32s = [rand(&[n1, k, p], 17), rand(&[n2, k, p], 18), rand(&[n1, n2, p], 19)]
            .map(|t| t.to_dtype(DType::F32).unwrap());
        same_both_ways(&f32s, &|t| masked_pair(&t[0], &t[1], &t[2]), 1e-4);
    }
}
