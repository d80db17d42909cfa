//! The masked convolution's per-example weight gradients at the kept weights only. A convolution's
//! kernel block is `Σ_e g₁[(i,c),e] g₂[(j,c'),e]` over its weights `e = (o, q)` (output channel `o`,
//! patch entry `q`), with `g[(i,c),(o,q)] = Σ_l D[i,c,o,l] P[i,q,l]` (backward signals `D`, image
//! patches `P` at output positions `l`). Under a 0/1 mask only the kept weights contribute, so
//! forming `g` at those alone costs the mask's density times the dense per-example product, and the
//! kernel's product shrinks the same way. The dense per-example gradients ([`PerExampleGrad`]) are
//! one gemm per example on strided views. Hand-written backward passes, checked against the dense
//! formulation and by central finite differences in the tests.

use awt_base::conv::cpu_slice;
use awt_base::kernels::{View, axpy, dot, gemm_into, with_slices3};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `G[(i,c),e] = Σ_l D[(i,c),o_e,l] P[i,q_e,l]` for the kept weights `e` of a convolution's mask,
/// then the bias gradients `Σ_l D[(i,c),o,l]`, with `D: (n·k, o, oh, ow)` (the signals as the
/// kernel's backward pass makes them: no reshape node, whose backward pass would copy the largest
/// tensor of the graph twice more) and `P: (n, Q, L)`; the result is `(n·k, kept + o)`, kept weights
/// in row-major order of the mask `(o, Q)`. One product of two such results is the layer's kernel
/// block, weights and bias. Differentiable in `D` and `P` (the mask is a constant); no gradient is
/// formed for an argument that needs none (the first layer's patches of the input).
#[derive(Clone, Debug)]
pub struct KeptConvGrad {
    /// Per output channel, the kept patch entries.
    pub(super) rows: Vec<Vec<usize>>,
    /// Per output channel, the index of its first kept weight in the result.
    pub(super) first: Vec<usize>,
    pub(super) kept: usize,
    pub(super) q: usize,
}

struct Dims {
    n: usize,
    k: usize,
    o: usize,
    l: usize,
}

impl KeptConvGrad {
    /// Reads a 0/1 mask `(o, Q)` once (its non-zero pattern).
    pub fn new(mask: &Tensor) -> Result<KeptConvGrad> {
        let (_, q) = mask.dims2()?;
        let m = awt_base::signal::mask_values(mask)?;
        let rows: Vec<Vec<usize>> = m
            .chunks(q.max(1))
            .map(|r| r.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect())
            .collect();
        let mut first = Vec::with_capacity(rows.len());
        let mut kept = 0;
        for r in &rows {
            first.push(kept);
            kept += r.len();
        }
        Ok(KeptConvGrad { rows, first, kept, q })
    }

    /// Number of kept weights.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept
    }

    fn dims(&self, d: &Shape, p: &Shape) -> Result<Dims> {
        let (nk, o, oh, ow) = d.dims4()?;
        let (n, pq, l) = p.dims3()?;
        if n == 0 || nk % n != 0 || pq != self.q || l != oh * ow || o != self.rows.len() {
            candle_core::bail!(
                "kept-conv-grad: signals {d:?} and patches {p:?} do not fit a mask of {} × {}",
                self.rows.len(),
                self.q
            );
        }
        Ok(Dims { n, k: nk / n, o, l })
    }

    /// Values per row of the result: the kept weights, then one bias per output channel.
    pub(super) fn width(&self) -> usize {
        self.kept + self.rows.len()
    }

    fn fwd_t<T: WithDType>(&self, d: &[T], p: &[T], dm: &Dims) -> Vec<T> {
        let Dims { n, k, o, l } = *dm;
        let (q, w) = (self.q, self.width());
        let mut out = vec![T::zero(); n * k * w];
        out.par_chunks_mut((k * w).max(1)).enumerate().for_each(|(i, out_i)| {
            let (d_i, p_i) = (&d[i * k * o * l..][..k * o * l], &p[i * q * l..][..q * l]);
            for (c, row_out) in out_i.chunks_mut(w).enumerate() {
                for (oo, (row, &f)) in self.rows.iter().zip(&self.first).enumerate() {
                    let sig = &d_i[(c * o + oo) * l..][..l];
                    for (s, &qq) in row.iter().enumerate() {
                        row_out[f + s] = dot(sig, &p_i[qq * l..][..l]);
                    }
                    row_out[self.kept + oo] = sig.iter().fold(T::zero(), |a, &v| a + v);
                }
            }
        });
        out
    }

    /// Gradients of `⟨grad, G⟩` with respect to `D` and, with `need_p`, `P`.
    fn bwd_t<T: WithDType>(&self, d: &[T], p: &[T], grad: &[T], dm: &Dims, need_p: bool) -> (Vec<T>, Vec<T>) {
        let Dims { n, k, o, l } = *dm;
        let (q, w) = (self.q, self.width());
        let mut gd = vec![T::zero(); n * k * o * l];
        let mut gp = vec![T::zero(); if need_p { n * q * l } else { 0 }];
        let mut gp_rows = per_example_rows(&mut gp, q * l, n);
        gd.par_chunks_mut((k * o * l).max(1)).zip(gp_rows.par_iter_mut()).enumerate().for_each(|(i, (gd_i, gp_i))| {
            let (d_i, p_i) = (&d[i * k * o * l..][..k * o * l], &p[i * q * l..][..q * l]);
            let g_i = &grad[i * k * w..][..k * w];
            for c in 0..k {
                for (oo, (row, &f)) in self.rows.iter().zip(&self.first).enumerate() {
                    let at = (c * o + oo) * l;
                    // The bias: ∂/∂D[(i,c),o,·] += grad[(i,c), kept + o].
                    let b = g_i[c * w + self.kept + oo];
                    gd_i[at..at + l].iter_mut().for_each(|v| *v += b);
                    for (s, &qq) in row.iter().enumerate() {
                        let wv = g_i[c * w + f + s];
                        // ∂/∂D[(i,c),o,·] += grad · P[i,q,·];  ∂/∂P[i,q,·] += grad · D[(i,c),o,·]
                        axpy(&mut gd_i[at..at + l], wv, &p_i[qq * l..][..l]);
                        if need_p {
                            axpy(&mut gp_i[qq * l..][..l], wv, &d_i[at..at + l]);
                        }
                    }
                }
            }
        });
        drop(gp_rows);
        (gd, gp)
    }
}

/// `buf` as `n` per-example rows of `len` for a parallel zip, or `n` empty rows when `buf` is empty
/// (an argument that needs no gradient).
pub(super) fn per_example_rows<T>(buf: &mut [T], len: usize, n: usize) -> Vec<&mut [T]> {
    if buf.is_empty() { (0..n).map(|_| Default::default()).collect() } else { buf.chunks_mut(len.max(1)).collect() }
}

impl candle_core::CustomOp2 for KeptConvGrad {
    fn name(&self) -> &'static str {
        "awt-kept-conv-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = self.dims(l1.shape(), l2.shape())?;
        let st = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(self.fwd_t(cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?, &dm))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(self.fwd_t(cpu_slice::<f64>(s1, l1)?, cpu_slice::<f64>(s2, l2)?, &dm))
            }
            _ => candle_core::bail!("kept-conv-grad: only f32 or f64, both the same"),
        };
        Ok((st, Shape::from((dm.n * dm.k, self.width()))))
    }

    fn bwd(&self, d: &Tensor, p: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dm = self.dims(d.shape(), p.shape())?;
        let need_p = p.track_op();
        fn run<T: WithDType>(
            op: &KeptConvGrad,
            d: &Tensor,
            p: &Tensor,
            grad: &Tensor,
            dm: &Dims,
            need_p: bool,
        ) -> Result<(Tensor, Option<Tensor>)> {
            let (x, y) = with_slices3::<T, _>(d, p, grad, |d, p, g| op.bwd_t(d, p, g, dm, need_p))?;
            let gp = if need_p { Some(Tensor::from_vec(y, p.shape(), p.device())?) } else { None };
            Ok((Tensor::from_vec(x, d.shape(), d.device())?, gp))
        }
        let (x, y) = match d.dtype() {
            candle_core::DType::F32 => run::<f32>(self, d, p, grad, &dm, need_p)?,
            candle_core::DType::F64 => run::<f64>(self, d, p, grad, &dm, need_p)?,
            dt => candle_core::bail!("kept-conv-grad: only f32 or f64, got {dt:?}"),
        };
        Ok((Some(x), y))
    }
}

/// Per-example products `G[i] = D[i] P[i]ᵀ` for `D: (n, r, L)` and `P: (n, q, L)`, the result
/// `(n, r, q)`: a convolution's dense per-example weight gradients (`r` = classes × output channels,
/// `q` = patch entries, `L` = output positions). One gemm per example on strided views (candle's
/// batched matmul copies the transposed operand first), the batch split over candle's threads.
/// Differentiable in both arguments.
#[derive(Clone, Copy, Debug)]
pub struct PerExampleGrad;

fn per_example_dims(d: &Shape, p: &Shape) -> Result<(usize, usize, usize, usize)> {
    let (n, r, l) = d.dims3()?;
    let (pn, q, pl) = p.dims3()?;
    if (pn, pl) != (n, l) {
        candle_core::bail!("per-example-grad: signals {d:?} and patches {p:?} do not fit (n, r, L) (n, q, L)");
    }
    Ok((n, r, q, l))
}

/// Runs `f(i, out_i)` for every example's block of `out` (`chunk` elements each), in parallel.
fn per_example<T: WithDType>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if chunk > 0 {
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| f(i, o));
    }
}

impl candle_core::CustomOp2 for PerExampleGrad {
    fn name(&self) -> &'static str {
        "awt-per-example-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, r, q, l) = per_example_dims(l1.shape(), l2.shape())?;
        fn run<T: WithDType>(d: &[T], p: &[T], (n, r, q, l): (usize, usize, usize, usize)) -> Vec<T> {
            let mut out = vec![T::zero(); n * r * q];
            per_example(&mut out, r * q, |i, o| {
                gemm_into(
                    (r, q, l),
                    (o, View::rows(0, q)),
                    (d, View::rows(i * r * l, l)),
                    (p, View::transposed(i * q * l, l)),
                    false,
                )
            });
            out
        }
        let st = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(run(cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?, (n, r, q, l)))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(run(cpu_slice::<f64>(s1, l1)?, cpu_slice::<f64>(s2, l2)?, (n, r, q, l)))
            }
            _ => candle_core::bail!("per-example-grad: only f32 or f64, both the same"),
        };
        Ok((st, Shape::from((n, r, q))))
    }

    fn bwd(&self, d: &Tensor, p: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dims = per_example_dims(d.shape(), p.shape())?;
        fn run<T: WithDType>(
            d: &Tensor,
            p: &Tensor,
            grad: &Tensor,
            (n, r, q, l): (usize, usize, usize, usize),
        ) -> Result<(Tensor, Tensor)> {
            let (gd, gp) = with_slices3::<T, _>(d, p, grad, |ds, ps, gs| per_example_bwd(ds, ps, gs, (n, r, q, l)))?;
            Ok((Tensor::from_vec(gd, d.shape(), d.device())?, Tensor::from_vec(gp, p.shape(), p.device())?))
        }
        /// ∂/∂D[i] = G'[i] P[i] (r × q)(q × L);  ∂/∂P[i] = G'[i]ᵀ D[i] (q × r)(r × L)
        fn per_example_bwd<T: WithDType>(
            ds: &[T],
            ps: &[T],
            gs: &[T],
            (n, r, q, l): (usize, usize, usize, usize),
        ) -> (Vec<T>, Vec<T>) {
            let mut gd = vec![T::zero(); n * r * l];
            per_example(&mut gd, r * l, |i, o| {
                gemm_into(
                    (r, l, q),
                    (o, View::rows(0, l)),
                    (gs, View::rows(i * r * q, q)),
                    (ps, View::rows(i * q * l, l)),
                    false,
                )
            });
            let mut gp = vec![T::zero(); n * q * l];
            per_example(&mut gp, q * l, |i, o| {
                gemm_into(
                    (q, l, r),
                    (o, View::rows(0, l)),
                    (gs, View::transposed(i * r * q, q)),
                    (ds, View::rows(i * r * l, l)),
                    false,
                )
            });
            (gd, gp)
        }
        let (a, b) = match d.dtype() {
            candle_core::DType::F32 => run::<f32>(d, p, grad, dims)?,
            candle_core::DType::F64 => run::<f64>(d, p, grad, dims)?,
            dt => candle_core::bail!("per-example-grad: only f32 or f64, got {dt:?}"),
        };
        Ok((Some(a), Some(b)))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // candle's matmul is the reference here
mod tests {
    use super::*;
    use awt_base::testing::{check_fd, edge_mask, max_diff, rand, same_gradients};
    use candle_core::{Device, Var};

    #[test]
    fn kept_conv_grad_equals_the_dense_per_example_gradient_at_the_kept_weights() {
        let (n, k, o, q, oh, ow) = (3, 2, 4, 6, 3, 5);
        let l = oh * ow;
        let d = Var::from_tensor(&rand(&[n * k, o, oh, ow], 50)).unwrap();
        let p = Var::from_tensor(&rand(&[n, q, l], 51)).unwrap();
        let m = edge_mask(o, q, 0.4, 52);
        let flat = m.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let kept_idx: Vec<u32> = flat.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i as u32).collect();
        let op = KeptConvGrad::new(&m).unwrap();
        assert_eq!(op.kept(), kept_idx.len());
        // The dense per-example gradient (n·k, o·Q) by a batched matmul, its kept columns, then the
        // bias gradients (the signals summed over positions).
        let slow_of = |d: &Tensor, p: &Tensor| {
            let dense = d
                .reshape((n, k * o, l))
                .unwrap()
                .matmul(&p.transpose(1, 2).unwrap())
                .unwrap()
                .reshape((n * k, o * q))
                .unwrap();
            let idx = Tensor::from_vec(kept_idx.clone(), kept_idx.len(), &Device::Cpu).unwrap();
            let bias = d.reshape((n * k, o, l)).unwrap().sum(2).unwrap();
            Tensor::cat(&[&dense.index_select(&idx, 1).unwrap(), &bias], 1).unwrap()
        };
        let fast = d.as_tensor().apply_op2(p.as_tensor(), op.clone()).unwrap();
        let slow = slow_of(d.as_tensor(), p.as_tensor());
        assert_eq!(fast.dims(), &[n * k, kept_idx.len() + o]);
        assert!(max_diff(&fast, &slow) < 1e-13);
        let w = rand(&[n * k, kept_idx.len() + o], 53);
        let grads = same_gradients(&fast, &slow, &w, &[&d, &p], 1e-13);
        let inputs = [d.as_tensor().clone(), p.as_tensor().clone()];
        check_fd(&inputs, &grads, 11, &w, &|xs| xs[0].apply_op2(&xs[1], op.clone()).unwrap());
        // Patches that need no gradient (the input's): the signals' gradient is the same.
        let fixed = p.as_tensor().detach();
        let g = d.as_tensor().apply_op2(&fixed, op.clone()).unwrap().mul(&w).unwrap().sum_all().unwrap();
        let g = g.backward().unwrap();
        assert!(max_diff(g.get(d.as_tensor()).unwrap(), &grads[0]) < 1e-13);
        assert!(g.get(&fixed).is_none());
        let bad = d.as_tensor().apply_op2(&rand(&[n, q + 1, l], 54), op);
        assert!(bad.unwrap_err().to_string().contains("kept-conv-grad"));
    }

    #[test]
    fn per_example_grad_equals_the_batched_matmul_with_gradients() {
        let (n, r, q, l) = (3, 5, 4, 7);
        let d = Var::from_tensor(&rand(&[n, r, l], 60)).unwrap();
        let p = Var::from_tensor(&rand(&[n, q, l], 61)).unwrap();
        let fast = d.as_tensor().apply_op2(p.as_tensor(), PerExampleGrad).unwrap();
        let slow = d.as_tensor().matmul(&p.as_tensor().transpose(1, 2).unwrap()).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-13);
        let w = rand(&[n, r, q], 62);
        let grads = same_gradients(&fast, &slow, &w, &[&d, &p], 1e-13);
        let inputs = [d.as_tensor().clone(), p.as_tensor().clone()];
        check_fd(&inputs, &grads, 13, &w, &|xs| xs[0].apply_op2(&xs[1], PerExampleGrad).unwrap());
        let bad = d.as_tensor().apply_op2(&rand(&[n, q, l + 1], 63), PerExampleGrad);
        assert!(bad.unwrap_err().to_string().contains("per-example-grad"));
    }
}
