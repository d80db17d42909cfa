//! The masked linear layer's kernel ops: the kernel contraction (one gemm per example pair on
//! strided views, the crate's one unsafe call) and the masked input Gram gathered per output unit
//! (work ∝ the mask's density). Hand-written backward passes, checked against autograd of the
//! broadcast forms and by central finite differences in the tests.

use awt_base::conv::cpu_slice;
use awt_base::kernels::{View, gemm_into, with_slice, with_slices3};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// A masked linear layer's kernel block, `Θ[(i,c),(j,c')] = Σ_p d1[i,c,p] g[i,j,p] d2[j,c',p]`, with
/// `d1: (n1, k, p)`, `d2: (n2, k, p)` the backward signals and `g: (n1, n2, p)` the masked input
/// products (plus one for the bias); the result is `(n1·k, n2·k)`. The same contraction by candle
/// ops needs an `(n1, n2, k, p)` temporary whose backward is a reduction over middle axes (slow on
/// CPU); here forward and backward are loops over example pairs with contiguous inner products.
/// Differentiable in all three arguments.
#[derive(Clone, Copy, Debug)]
pub struct MaskedPair;

struct PairDims {
    n1: usize,
    n2: usize,
    k: usize,
    p: usize,
}

fn pair_dims(d1: &Shape, d2: &Shape, g: &Shape) -> Result<PairDims> {
    let (n1, k, p) = d1.dims3()?;
    let (n2, k2, p2) = d2.dims3()?;
    let (gn1, gn2, gp) = g.dims3()?;
    if k2 != k || p2 != p || (gn1, gn2, gp) != (n1, n2, p) {
        candle_core::bail!("masked-pair: shapes {d1:?} {d2:?} {g:?} do not fit (n1,k,p) (n2,k,p) (n1,n2,p)");
    }
    Ok(PairDims { n1, n2, k, p })
}

fn masked_pair_fwd<T: WithDType>(d1: &[T], d2: &[T], g: &[T], dims: &PairDims) -> Vec<T> {
    let PairDims { n1, n2, k, p } = *dims;
    let mut out = vec![T::zero(); n1 * k * n2 * k];
    // Example by example (rows i·k..(i+1)·k of Θ), the examples split over threads.
    out.par_chunks_mut((k * n2 * k).max(1)).enumerate().for_each_init(
        || vec![T::zero(); n2 * k * p],
        |r, (i, rows)| {
            // R[(j,c'),·] = g[i,j,·] ⊙ d2[j,c',·]; rows (i,·) of Θ are d1[i] (k × p) · Rᵀ (p × n2·k).
            for j in 0..n2 {
                let gij = &g[(i * n2 + j) * p..][..p];
                for cc in 0..k {
                    let row = (j * k + cc) * p;
                    for ((o, &x), &y) in r[row..row + p].iter_mut().zip(&d2[row..row + p]).zip(gij) {
                        *o = x * y;
                    }
                }
            }
            gemm_into(
                (k, n2 * k, p),
                (rows, View { offset: 0, rs: n2 * k, cs: 1 }),
                (d1, View { offset: i * k * p, rs: p, cs: 1 }),
                (r, View { offset: 0, rs: 1, cs: p }),
                false,
            );
        },
    );
    out
}

/// Examples of the second side per parallel task of [`masked_pair_bwd`] (fixed, so that the sum of
/// the tasks' partial gradients does not depend on the thread count).
const PAIR_BLOCK: usize = 4;

/// Gradients of `⟨grad, Θ⟩` with respect to d1, d2 and g, over blocks of [`PAIR_BLOCK`] second-side
/// examples in parallel; the blocks' partial `d1` gradients are summed in block order.
fn masked_pair_bwd<T: WithDType>(d1: &[T], d2: &[T], g: &[T], grad: &[T], dims: &PairDims) -> (Vec<T>, Vec<T>, Vec<T>) {
    let PairDims { n1, n2, k, p } = *dims;
    let mut gd2 = vec![T::zero(); n2 * k * p];
    let row_stride = n2 * k;
    // Per block: its partial ∂/∂d1 and its examples' ∂/∂g as (j, i, ·).
    let parts: Vec<(Vec<T>, Vec<T>)> = gd2
        .par_chunks_mut((PAIR_BLOCK * k * p).max(1))
        .enumerate()
        .map(|(b, gd2)| {
            let j0 = b * PAIR_BLOCK;
            let jn = gd2.len() / (k * p).max(1);
            let (mut gd1, mut gg) = (vec![T::zero(); n1 * k * p], vec![T::zero(); jn * n1 * p]);
            let (mut u, mut sm) = (vec![T::zero(); n1 * k * p], vec![T::zero(); n1 * k * p]);
            for jj in 0..jn {
                let j = j0 + jj;
                // U[(i,c),·] = Σ_c' grad[(i,c),(j,c')] d2[j,c',·]: the grad's column block j (n1·k × k) · d2[j].
                gemm_into(
                    (n1 * k, p, k),
                    (&mut u, View { offset: 0, rs: p, cs: 1 }),
                    (grad, View { offset: j * k, rs: row_stride, cs: 1 }),
                    (d2, View { offset: j * k * p, rs: p, cs: 1 }),
                    false,
                );
                for i in 0..n1 {
                    let gij = &g[(i * n2 + j) * p..][..p];
                    for c in 0..k {
                        let row = (i * k + c) * p;
                        let (uc, d1c) = (&u[row..row + p], &d1[row..row + p]);
                        // ∂/∂g[i,j,·] = Σ_c d1[i,c,·] U[(i,c),·];  ∂/∂d1[i,c,·] = Σ_j g[i,j,·] U[(i,c),·]
                        for ((o, &x), &y) in gg[(jj * n1 + i) * p..][..p].iter_mut().zip(d1c).zip(uc) {
                            *o += x * y;
                        }
                        for ((o, &x), &y) in gd1[row..row + p].iter_mut().zip(gij).zip(uc) {
                            *o += x * y;
                        }
                        // S[(i,c),·] = g[i,j,·] ⊙ d1[i,c,·]
                        for ((o, &x), &y) in sm[row..row + p].iter_mut().zip(gij).zip(d1c) {
                            *o = x * y;
                        }
                    }
                }
                // ∂/∂d2[j] = (grad's column block j)ᵀ (k × n1·k) · S (n1·k × p)
                gemm_into(
                    (k, p, n1 * k),
                    (gd2, View { offset: jj * k * p, rs: p, cs: 1 }),
                    (grad, View { offset: j * k, rs: 1, cs: row_stride }),
                    (&sm, View { offset: 0, rs: p, cs: 1 }),
                    false,
                );
            }
            (gd1, gg)
        })
        .collect();
    let (mut gd1, mut gg) = (vec![T::zero(); n1 * k * p], vec![T::zero(); n1 * n2 * p]);
    for (b, (part, gb)) in parts.into_iter().enumerate() {
        for (o, v) in gd1.iter_mut().zip(part) {
            *o += v;
        }
        for (jj, rows) in gb.chunks(n1 * p).enumerate() {
            let j = b * PAIR_BLOCK + jj;
            for (i, row) in rows.chunks(p).enumerate() {
                gg[(i * n2 + j) * p..][..p].copy_from_slice(row);
            }
        }
    }
    (gd1, gd2, gg)
}

impl candle_core::CustomOp3 for MaskedPair {
    fn name(&self) -> &'static str {
        "awt-masked-pair"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = pair_dims(l1.shape(), l2.shape(), l3.shape())?;
        let st = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(masked_pair_fwd(
                cpu_slice::<f32>(s1, l1)?,
                cpu_slice::<f32>(s2, l2)?,
                cpu_slice::<f32>(s3, l3)?,
                &dims,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(masked_pair_fwd(
                cpu_slice::<f64>(s1, l1)?,
                cpu_slice::<f64>(s2, l2)?,
                cpu_slice::<f64>(s3, l3)?,
                &dims,
            )),
            _ => candle_core::bail!("masked-pair: only f32 or f64, all the same"),
        };
        Ok((st, Shape::from((dims.n1 * dims.k, dims.n2 * dims.k))))
    }

    fn bwd(
        &self,
        d1: &Tensor,
        d2: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = pair_dims(d1.shape(), d2.shape(), g.shape())?;
        fn run<T: WithDType>(
            d1: &Tensor,
            d2: &Tensor,
            g: &Tensor,
            grad: &Tensor,
            dims: &PairDims,
        ) -> Result<(Tensor, Tensor, Tensor)> {
            let (a, b, c) = with_slice::<T, _>(grad, |gr| {
                with_slices3::<T, _>(d1, d2, g, |x, y, z| masked_pair_bwd(x, y, z, gr, dims))
            })??;
            let dev = d1.device();
            Ok((
                Tensor::from_vec(a, d1.shape(), dev)?,
                Tensor::from_vec(b, d2.shape(), dev)?,
                Tensor::from_vec(c, g.shape(), dev)?,
            ))
        }
        let (a, b, c) = match d1.dtype() {
            candle_core::DType::F32 => run::<f32>(d1, d2, g, grad, &dims)?,
            candle_core::DType::F64 => run::<f64>(d1, d2, g, grad, &dims)?,
            dt => candle_core::bail!("masked-pair: only f32 or f64, got {dt:?}"),
        };
        Ok((Some(a), Some(b), Some(c)))
    }
}

/// The masked Gram of a linear layer's inputs, `G[i,j,p] = Σ_q m[p,q] a1[i,q] a2[j,q]`, with
/// `a1: (n1, q)`, `a2: (n2, q)` and a constant mask `m: (p, q)`; the result is `(n1, n2, p)`. For each
/// output unit `p` only the kept inputs `q` take part (a gather, then one `n1 × n2` gemm), so the work
/// is the mask's density times the dense form's `(n1·n2 × q)(q × p)` product. Differentiable in `a1`
/// and `a2` (the mask is a constant).
#[derive(Clone, Debug)]
pub struct MaskedGram {
    /// Per output unit, the kept input indices and the mask's values there.
    rows: Vec<(Vec<usize>, Vec<f64>)>,
    q: usize,
    /// Added to every entry (1 for the bias term: `G + 1` in one pass, not a second op whose
    /// backward pass copies the gradient once more).
    offset: f64,
}

impl MaskedGram {
    /// Reads the mask `(p, q)` once (its non-zero pattern).
    pub fn new(mask: &Tensor) -> Result<MaskedGram> {
        let (_, q) = mask.dims2()?;
        let m = awt_base::signal::mask_values(mask)?;
        let rows = m
            .chunks(q.max(1))
            .map(|r| r.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, v)| (i, *v)).unzip())
            .collect();
        Ok(MaskedGram { rows, q, offset: 0.0 })
    }

    /// The op that returns `G + 1` (the masked linear layer's bias term included).
    pub fn plus_one(mut self) -> MaskedGram {
        self.offset = 1.0;
        self
    }

    /// Kept weights over all weights.
    #[cfg(test)]
    pub fn density(&self) -> f64 {
        let kept: usize = self.rows.iter().map(|r| r.0.len()).sum();
        kept as f64 / (self.rows.len() * self.q).max(1) as f64
    }

    fn gather<T: WithDType>(&self, a: &[T], n: usize, p: usize, out: &mut Vec<T>) {
        let (idx, val) = &self.rows[p];
        out.clear();
        for i in 0..n {
            let row = &a[i * self.q..(i + 1) * self.q];
            out.extend(idx.iter().zip(val).map(|(&q, &v)| row[q] * T::from_f64(v)));
        }
    }

    /// Per output unit `p` (in parallel) one `n1 × n2` gemm into the `(p, n1·n2)` layout, where each
    /// unit's block is contiguous, then one transpose to `(n1·n2, p)`.
    fn fwd_t<T: WithDType>(&self, a1: &[T], a2: &[T], n1: usize, n2: usize) -> Vec<T> {
        let (np, nn) = (self.rows.len(), n1 * n2);
        let mut by_unit = vec![T::zero(); np * nn];
        by_unit.par_chunks_mut(nn.max(1)).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |(g1, g2), (p, block)| {
                let nnz = self.rows[p].0.len();
                if nnz == 0 {
                    return;
                }
                self.gather(a1, n1, p, g1);
                self.gather(a2, n2, p, g2);
                gemm_into(
                    (n1, n2, nnz),
                    (block, View::rows(0, n2)),
                    (g1, View { offset: 0, rs: nnz, cs: 1 }),
                    (g2, View { offset: 0, rs: 1, cs: nnz }),
                    false,
                );
            },
        );
        let mut out = transpose(&by_unit, np, nn);
        if self.offset != 0.0 {
            let c = T::from_f64(self.offset);
            out.par_chunks_mut(1 << 16).for_each(|ch| ch.iter_mut().for_each(|v| *v += c));
        }
        out
    }

    /// Gradients of `⟨grad, G⟩` with respect to a1 and a2: per block of [`GRAM_BLOCK`] output units
    /// (in parallel) a partial gradient, the partials summed in block order.
    fn bwd_t<T: WithDType>(&self, a1: &[T], a2: &[T], grad: &[T], n1: usize, n2: usize) -> (Vec<T>, Vec<T>) {
        let (np, q, nn) = (self.rows.len(), self.q, n1 * n2);
        let grad = transpose(grad, nn, np); // (p, n1·n2): each unit's gradient contiguous
        let parts: Vec<(Vec<T>, Vec<T>)> = grad
            .par_chunks((GRAM_BLOCK * nn).max(1))
            .enumerate()
            .map(|(b, grads)| {
                let (mut ga1, mut ga2) = (vec![T::zero(); n1 * q], vec![T::zero(); n2 * q]);
                let (mut g1, mut g2, mut t) = (Vec::new(), Vec::new(), Vec::new());
                for (pp, gp) in grads.chunks(nn.max(1)).enumerate() {
                    let p = b * GRAM_BLOCK + pp;
                    let (idx, val) = &self.rows[p];
                    let nnz = idx.len();
                    if nnz == 0 {
                        continue;
                    }
                    self.gather(a1, n1, p, &mut g1);
                    self.gather(a2, n2, p, &mut g2);
                    // ∂/∂a1[i, idx] = m[p, idx] ⊙ (grad[:, :, p] (n1 × n2) · gathered a2 (n2 × nnz))[i]
                    t.resize(n1.max(n2) * nnz, T::zero());
                    let tv = View { offset: 0, rs: nnz, cs: 1 };
                    gemm_into((n1, nnz, n2), (&mut t, tv), (gp, View::rows(0, n2)), (&g2, tv), false);
                    for i in 0..n1 {
                        for (s, (&qq, &v)) in idx.iter().zip(val).enumerate() {
                            ga1[i * q + qq] += t[i * nnz + s] * T::from_f64(v);
                        }
                    }
                    // ∂/∂a2[j, idx] = m[p, idx] ⊙ (grad[:, :, p]ᵀ (n2 × n1) · gathered a1 (n1 × nnz))[j]
                    gemm_into((n2, nnz, n1), (&mut t, tv), (gp, View::transposed(0, n2)), (&g1, tv), false);
                    for j in 0..n2 {
                        for (s, (&qq, &v)) in idx.iter().zip(val).enumerate() {
                            ga2[j * q + qq] += t[j * nnz + s] * T::from_f64(v);
                        }
                    }
                }
                (ga1, ga2)
            })
            .collect();
        let (mut ga1, mut ga2) = (vec![T::zero(); n1 * q], vec![T::zero(); n2 * q]);
        for (p1, p2) in parts {
            ga1.iter_mut().zip(p1).for_each(|(o, v)| *o += v);
            ga2.iter_mut().zip(p2).for_each(|(o, v)| *o += v);
        }
        (ga1, ga2)
    }
}

/// Output units per parallel task of [`MaskedGram`]'s backward (fixed: the partial sums' order does
/// not depend on the thread count).
const GRAM_BLOCK: usize = 32;

/// `(rows, cols)` row-major → `(cols, rows)` row-major, in 32 × 32 tiles, rows of the result split
/// over threads.
fn transpose<T: WithDType>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut out = vec![T::zero(); rows * cols];
    out.par_chunks_mut((TILE * rows).max(1)).enumerate().for_each(|(cb, dst)| {
        let c0 = cb * TILE;
        let cn = dst.len() / rows.max(1);
        for r0 in (0..rows).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in 0..cn {
                    dst[c * rows + r] = src[r * cols + c0 + c];
                }
            }
        }
    });
    out
}

impl candle_core::CustomOp2 for MaskedGram {
    fn name(&self) -> &'static str {
        "awt-masked-gram"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n1, q1) = l1.shape().dims2()?;
        let (n2, q2) = l2.shape().dims2()?;
        if q1 != self.q || q2 != self.q {
            candle_core::bail!(
                "masked-gram: inputs {:?} {:?} do not fit a mask with {} inputs",
                l1.shape(),
                l2.shape(),
                self.q
            );
        }
        let st = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(self.fwd_t(cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?, n1, n2))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(self.fwd_t(cpu_slice::<f64>(s1, l1)?, cpu_slice::<f64>(s2, l2)?, n1, n2))
            }
            _ => candle_core::bail!("masked-gram: only f32 or f64, both the same"),
        };
        Ok((st, Shape::from((n1, n2, self.rows.len()))))
    }

    fn bwd(&self, a1: &Tensor, a2: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n1, n2) = (a1.dim(0)?, a2.dim(0)?);
        fn run<T: WithDType>(
            op: &MaskedGram,
            a1: &Tensor,
            a2: &Tensor,
            grad: &Tensor,
            (n1, n2): (usize, usize),
        ) -> Result<(Tensor, Tensor)> {
            let (x, y) = with_slices3::<T, _>(a1, a2, grad, |a, b, g| op.bwd_t(a, b, g, n1, n2))?;
            Ok((Tensor::from_vec(x, a1.shape(), a1.device())?, Tensor::from_vec(y, a2.shape(), a2.device())?))
        }
        let (x, y) = match a1.dtype() {
            candle_core::DType::F32 => run::<f32>(self, a1, a2, grad, (n1, n2))?,
            candle_core::DType::F64 => run::<f64>(self, a1, a2, grad, (n1, n2))?,
            dt => candle_core::bail!("masked-gram: only f32 or f64, got {dt:?}"),
        };
        Ok((Some(x), Some(y)))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // candle's matmul is the reference here
mod tests {
    use super::*;
    use awt_base::testing::{check_fd, edge_mask, max_diff, rand, same_gradients};
    use candle_core::Var;

    #[test]
    fn masked_pair_equals_the_broadcast_formulation_with_gradients() {
        // 9 second-side examples: two full blocks of the backward and a partial one.
        let (n1, n2, k, p) = (3, 9, 2, 5);
        let d1 = Var::from_tensor(&rand(&[n1, k, p], 30)).unwrap();
        let d2 = Var::from_tensor(&rand(&[n2, k, p], 31)).unwrap();
        let g = Var::from_tensor(&rand(&[n1, n2, p], 32)).unwrap();
        let r = rand(&[n1 * k, n2 * k], 33);
        let fast = d1.as_tensor().apply_op3(d2.as_tensor(), g.as_tensor(), MaskedPair).unwrap();
        // Θ[i,c,j,c'] = Σ_p d1[i,c,p] g[i,j,p] d2[j,c',p] by broadcasting over (i, c, j, c', p).
        let slow = d1
            .as_tensor()
            .reshape((n1, k, 1, 1, p))
            .unwrap()
            .broadcast_mul(&g.as_tensor().reshape((n1, 1, n2, 1, p)).unwrap())
            .unwrap()
            .broadcast_mul(&d2.as_tensor().reshape((1, 1, n2, k, p)).unwrap())
            .unwrap()
            .sum(4)
            .unwrap()
            .reshape((n1 * k, n2 * k))
            .unwrap();
        assert!(max_diff(&fast, &slow) < 1e-13);
        let grads = same_gradients(&fast, &slow, &r, &[&d1, &d2, &g], 1e-13);
        // And by central finite differences of ⟨Θ, r⟩, a few entries of each input.
        let inputs = [d1.as_tensor().clone(), d2.as_tensor().clone(), g.as_tensor().clone()];
        check_fd(&inputs, &grads, 7, &r, &|xs| xs[0].apply_op3(&xs[1], &xs[2], MaskedPair).unwrap());
        // Shapes that do not fit are refused by name.
        let bad = d1.as_tensor().apply_op3(d2.as_tensor(), &rand(&[n1, n2, p + 1], 34), MaskedPair);
        assert!(bad.unwrap_err().to_string().contains("masked-pair"));
    }

    #[test]
    fn masked_gram_equals_the_dense_form_with_gradients() {
        // 37 output units: a full block of the backward and a partial one, partial transpose tiles.
        let (n1, n2, p, q) = (3, 4, 37, 7);
        let a1 = Var::from_tensor(&rand(&[n1, q], 40)).unwrap();
        let a2 = Var::from_tensor(&rand(&[n2, q], 41)).unwrap();
        let m = edge_mask(p, q, 0.3, 42);
        let op = MaskedGram::new(&m).unwrap();
        let fast = a1.as_tensor().apply_op2(a2.as_tensor(), op.clone()).unwrap();
        let aa = a1.as_tensor().unsqueeze(1).unwrap().broadcast_mul(&a2.as_tensor().unsqueeze(0).unwrap()).unwrap();
        let slow = aa.reshape((n1 * n2, q)).unwrap().matmul(&m.t().unwrap()).unwrap().reshape((n1, n2, p)).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-13);
        let plus = a1.as_tensor().apply_op2(a2.as_tensor(), op.clone().plus_one()).unwrap();
        assert!(max_diff(&plus, &(&slow + 1.0).unwrap()) < 1e-13);
        let w = rand(&[n1, n2, p], 43);
        let grads = same_gradients(&fast, &slow, &w, &[&a1, &a2], 1e-13);
        // Central finite differences of ⟨G, w⟩ for a few entries of each input.
        let inputs = [a1.as_tensor().clone(), a2.as_tensor().clone()];
        check_fd(&inputs, &grads, 5, &w, &|xs| xs[0].apply_op2(&xs[1], op.clone()).unwrap());
        assert!((op.density() - m.sum_all().unwrap().to_scalar::<f64>().unwrap() / (p * q) as f64).abs() < 1e-15);
        let bad = a1.as_tensor().apply_op2(&rand(&[n2, q + 1], 44), op);
        assert!(bad.unwrap_err().to_string().contains("masked-gram"));
    }
}
