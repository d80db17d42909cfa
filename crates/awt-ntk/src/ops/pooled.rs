//! A convolution's (kept-)weight gradients straight from the signals at the output of the ReLU and
//! 2×2 max-pool after it ([`PooledKeptConvGrad`]): the signals are never routed to full size, and
//! each window costs one product where the routed form costs four. Hand-written backward passes,
//! checked against [`PoolRoute`](awt_base::signal::PoolRoute) followed by [`KeptConvGrad`] and by
//! central finite differences in the tests.

use awt_base::conv::cpu_slice;
use awt_base::kernels::{axpy, dot, with_slice, with_slices3};
use awt_base::signal::{NO_ROUTE, pool_routes};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::conv::{KeptConvGrad, per_example_rows};

/// [`KeptConvGrad`] of a convolution followed by a ReLU and a 2×2 max-pool, taking the signals at
/// the pool's output: `D: (n·k, o, h/2, w/2)`, the pool's input `x: (n, o, h, w)` (a constant: where
/// each window's signal goes, and whether the ReLU lets it through) and the patches
/// `P: (n, Q, h·w)` → `(n·k, kept + o)`, exactly `KeptConvGrad(PoolRoute{after_relu}(D, x), P)`
/// without forming the routed signals — for the first layer of a LeNet-5 the largest tensor of the
/// kernel's graph (3.7 M values at 32 examples) — and with a quarter of the products (one per
/// window, not per position). Differentiable in `D` and `P`.
#[derive(Clone, Debug)]
pub struct PooledKeptConvGrad {
    pub(crate) inner: KeptConvGrad,
}

struct PoolDims {
    n: usize,
    k: usize,
    o: usize,
    /// Windows per plane.
    win: usize,
    /// Positions per plane (the convolution's output).
    l: usize,
    h: usize,
    w: usize,
}

impl PooledKeptConvGrad {
    /// Reads a 0/1 mask `(o, Q)` once.
    pub fn new(mask: &Tensor) -> Result<PooledKeptConvGrad> {
        Ok(PooledKeptConvGrad { inner: KeptConvGrad::new(mask)? })
    }

    fn dims(&self, d: &Shape, x: &Shape, p: &Shape) -> Result<PoolDims> {
        let (nk, o, h2, w2) = d.dims4()?;
        let (n, xo, h, w) = x.dims4()?;
        let (pn, pq, l) = p.dims3()?;
        let inner = &self.inner;
        if n == 0
            || nk % n != 0
            || (xo, h / 2, w / 2) != (o, h2, w2)
            || (pn, pq, l) != (n, inner.q, h * w)
            || o != inner.rows.len()
        {
            candle_core::bail!(
                "pooled-kept-conv-grad: signals {d:?}, pool inputs {x:?} and patches {p:?} do not fit a mask of {} × {}",
                inner.rows.len(),
                inner.q
            );
        }
        Ok(PoolDims { n, k: nk / n, o, win: h2 * w2, l, h, w })
    }

    /// Every weight kept: the dense form below.
    fn all_kept(&self) -> bool {
        self.inner.kept == self.inner.rows.len() * self.inner.q
    }

    fn fwd_t<T: WithDType>(&self, d: &[T], x: &[T], p: &[T], dm: &PoolDims) -> Vec<T> {
        if self.all_kept() {
            return self.dense_fwd(d, x, p, dm);
        }
        let PoolDims { n, k, o, win, l, h, w } = *dm;
        let KeptConvGrad { rows, first, kept, q } = &self.inner;
        let wd = kept + o;
        let routes = pool_routes(x, h, w, true);
        let mut out = vec![T::zero(); n * k * wd];
        out.par_chunks_mut((k * wd).max(1)).enumerate().for_each_init(
            || vec![T::zero(); win],
            |pg, (i, out_i)| {
                let (d_i, p_i) = (&d[i * k * o * win..][..k * o * win], &p[i * q * l..][..q * l]);
                for (oo, (row, &f)) in rows.iter().zip(first).enumerate() {
                    let rt = &routes[(i * o + oo) * win..][..win];
                    for (c, out_c) in out_i.chunks_mut(wd).enumerate() {
                        let sig = &d_i[(c * o + oo) * win..][..win];
                        out_c[kept + oo] =
                            sig.iter().zip(rt).filter(|(_, r)| **r != NO_ROUTE).fold(T::zero(), |a, (&v, _)| a + v);
                    }
                    for (s, &qq) in row.iter().enumerate() {
                        gather(&p_i[qq * l..][..l], rt, pg);
                        for (c, out_c) in out_i.chunks_mut(wd).enumerate() {
                            out_c[f + s] = dot(&d_i[(c * o + oo) * win..][..win], pg);
                        }
                    }
                }
            },
        );
        out
    }

    /// Gradients of `⟨grad, G⟩` with respect to `D` and, with `need_p`, `P`.
    fn bwd_t<T: WithDType>(
        &self,
        d: &[T],
        x: &[T],
        p: &[T],
        grad: &[T],
        dm: &PoolDims,
        need_p: bool,
    ) -> (Vec<T>, Vec<T>) {
        if self.all_kept() {
            return self.dense_bwd(d, x, p, grad, dm, need_p);
        }
        let PoolDims { n, k, o, win, l, h, w } = *dm;
        let KeptConvGrad { rows, first, kept, q } = &self.inner;
        let wd = kept + o;
        let routes = pool_routes(x, h, w, true);
        let mut gd = vec![T::zero(); n * k * o * win];
        let mut gp = vec![T::zero(); if need_p { n * q * l } else { 0 }];
        let mut gp_rows = per_example_rows(&mut gp, q * l, n);
        gd.par_chunks_mut((k * o * win).max(1)).zip(gp_rows.par_iter_mut()).enumerate().for_each_init(
            || (vec![T::zero(); win], vec![T::zero(); win]),
            |(pg, acc), (i, (gd_i, gp_i))| {
                let (d_i, p_i) = (&d[i * k * o * win..][..k * o * win], &p[i * q * l..][..q * l]);
                let g_i = &grad[i * k * wd..][..k * wd];
                for (oo, (row, &f)) in rows.iter().zip(first).enumerate() {
                    let rt = &routes[(i * o + oo) * win..][..win];
                    for c in 0..k {
                        // The bias: ∂/∂D[(i,c),o,w] += grad[(i,c), kept + o] where the window routes.
                        let b = g_i[c * wd + kept + oo];
                        let at = (c * o + oo) * win;
                        for (v, r) in gd_i[at..at + win].iter_mut().zip(rt) {
                            if *r != NO_ROUTE {
                                *v += b;
                            }
                        }
                    }
                    for (s, &qq) in row.iter().enumerate() {
                        gather(&p_i[qq * l..][..l], rt, pg);
                        acc.iter_mut().for_each(|v| *v = T::zero());
                        for c in 0..k {
                            let wv = g_i[c * wd + f + s];
                            let at = (c * o + oo) * win;
                            // ∂/∂D[(i,c),o,·] += grad · P[i,q,route(·)];  ∂/∂P[i,q,route(w)] += Σ_c grad · D[(i,c),o,w]
                            axpy(&mut gd_i[at..at + win], wv, pg);
                            if need_p {
                                axpy(acc, wv, &d_i[at..at + win]);
                            }
                        }
                        if need_p {
                            let gq = &mut gp_i[qq * l..][..l];
                            for (&v, &r) in acc.iter().zip(rt) {
                                if r != NO_ROUTE {
                                    gq[r as usize] += v;
                                }
                            }
                        }
                    }
                }
            },
        );
        drop(gp_rows);
        (gd, gp)
    }
}

impl PooledKeptConvGrad {
    /// Every weight kept (a dense layer's per-example gradients, e.g. the teacher's): per example the
    /// patches transposed to rows of `Q` (one per position), then per signal, channel and window
    /// one `axpy` of the routed position's row into the channel's `Q` gradients — vectorised over
    /// `Q` (500 for LeNet-5's conv2), a quarter of the positions of the routed per-example product.
    fn dense_fwd<T: WithDType>(&self, d: &[T], x: &[T], p: &[T], dm: &PoolDims) -> Vec<T> {
        let PoolDims { n, k, o, win, l, h, w } = *dm;
        let (q, kept) = (self.inner.q, self.inner.kept);
        let wd = kept + o;
        let routes = pool_routes(x, h, w, true);
        let mut out = vec![T::zero(); n * k * wd];
        out.par_chunks_mut((k * wd).max(1)).enumerate().for_each_init(
            || vec![T::zero(); l * q],
            |pt, (i, out_i)| {
                let d_i = &d[i * k * o * win..][..k * o * win];
                transpose_into(&p[i * q * l..][..q * l], q, l, pt);
                for oo in 0..o {
                    let rt = &routes[(i * o + oo) * win..][..win];
                    for (c, out_c) in out_i.chunks_mut(wd).enumerate() {
                        let sig = &d_i[(c * o + oo) * win..][..win];
                        let (row, bias) = (oo * q, kept + oo);
                        for (&v, &r) in sig.iter().zip(rt) {
                            if r != NO_ROUTE {
                                axpy(&mut out_c[row..row + q], v, &pt[r as usize * q..][..q]);
                                out_c[bias] += v;
                            }
                        }
                    }
                }
            },
        );
        out
    }

    /// Gradients of [`Self::dense_fwd`] with respect to `D` and, with `need_p`, `P`.
    fn dense_bwd<T: WithDType>(
        &self,
        d: &[T],
        x: &[T],
        p: &[T],
        grad: &[T],
        dm: &PoolDims,
        need_p: bool,
    ) -> (Vec<T>, Vec<T>) {
        let PoolDims { n, k, o, win, l, h, w } = *dm;
        let (q, kept) = (self.inner.q, self.inner.kept);
        let wd = kept + o;
        let routes = pool_routes(x, h, w, true);
        let mut gd = vec![T::zero(); n * k * o * win];
        let mut gp = vec![T::zero(); if need_p { n * q * l } else { 0 }];
        let mut gp_rows = per_example_rows(&mut gp, q * l, n);
        gd.par_chunks_mut((k * o * win).max(1)).zip(gp_rows.par_iter_mut()).enumerate().for_each_init(
            || (vec![T::zero(); l * q], vec![T::zero(); l * q]),
            |(pt, gpt), (i, (gd_i, gp_i))| {
                let d_i = &d[i * k * o * win..][..k * o * win];
                let g_i = &grad[i * k * wd..][..k * wd];
                transpose_into(&p[i * q * l..][..q * l], q, l, pt);
                if need_p {
                    gpt.iter_mut().for_each(|v| *v = T::zero());
                }
                for oo in 0..o {
                    let rt = &routes[(i * o + oo) * win..][..win];
                    for c in 0..k {
                        let (gr, b) = (&g_i[c * wd + oo * q..][..q], g_i[c * wd + kept + oo]);
                        let at = (c * o + oo) * win;
                        for (wi, &r) in rt.iter().enumerate() {
                            if r == NO_ROUTE {
                                continue;
                            }
                            let row = r as usize * q;
                            // ∂/∂D[(i,c),o,w] = ⟨grad row, P row at the route⟩ + the bias' grad;
                            // ∂/∂P[i,·,route] += D[(i,c),o,w] · grad row.
                            gd_i[at + wi] = dot(gr, &pt[row..row + q]) + b;
                            if need_p {
                                axpy(&mut gpt[row..row + q], d_i[at + wi], gr);
                            }
                        }
                    }
                }
                if need_p {
                    transpose_into(gpt, l, q, gp_i);
                }
            },
        );
        drop(gp_rows);
        (gd, gp)
    }
}

/// `(rows, cols)` row-major `src` → `(cols, rows)` row-major into `dst`.
fn transpose_into<T: WithDType>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    for (r, row) in src.chunks(cols.max(1)).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            dst[c * rows + r] = v;
        }
    }
}

/// `out[w] = src[route[w]]` (zero where the window does not route).
fn gather<T: WithDType>(src: &[T], route: &[u32], out: &mut [T]) {
    for (o, &r) in out.iter_mut().zip(route) {
        *o = if r == NO_ROUTE { T::zero() } else { src[r as usize] };
    }
}

impl candle_core::CustomOp3 for PooledKeptConvGrad {
    fn name(&self) -> &'static str {
        "awt-pooled-kept-conv-grad"
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
        let dm = self.dims(l1.shape(), l2.shape(), l3.shape())?;
        let st = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.fwd_t(
                cpu_slice::<f32>(s1, l1)?,
                cpu_slice::<f32>(s2, l2)?,
                cpu_slice::<f32>(s3, l3)?,
                &dm,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.fwd_t(
                cpu_slice::<f64>(s1, l1)?,
                cpu_slice::<f64>(s2, l2)?,
                cpu_slice::<f64>(s3, l3)?,
                &dm,
            )),
            _ => candle_core::bail!("pooled-kept-conv-grad: only f32 or f64, all the same"),
        };
        Ok((st, Shape::from((dm.n * dm.k, self.inner.width()))))
    }

    fn bwd(
        &self,
        d: &Tensor,
        x: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dm = self.dims(d.shape(), x.shape(), p.shape())?;
        let need_p = p.track_op();
        fn run<T: WithDType>(
            op: &PooledKeptConvGrad,
            (d, x, p, grad): (&Tensor, &Tensor, &Tensor, &Tensor),
            dm: &PoolDims,
            need_p: bool,
        ) -> Result<(Tensor, Option<Tensor>)> {
            let (a, b) = with_slice::<T, _>(grad, |g| {
                with_slices3::<T, _>(d, x, p, |ds, xs, ps| op.bwd_t(ds, xs, ps, g, dm, need_p))
            })??;
            let gp = if need_p { Some(Tensor::from_vec(b, p.shape(), p.device())?) } else { None };
            Ok((Tensor::from_vec(a, d.shape(), d.device())?, gp))
        }
        let args = (d, x, p, grad);
        let (a, b) = match d.dtype() {
            candle_core::DType::F32 => run::<f32>(self, args, &dm, need_p)?,
            candle_core::DType::F64 => run::<f64>(self, args, &dm, need_p)?,
            dt => candle_core::bail!("pooled-kept-conv-grad: only f32 or f64, got {dt:?}"),
        };
        Ok((Some(a), None, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use awt_base::testing::{check_fd, edge_mask, max_diff, rand, same_gradients};
    use candle_core::{Device, Var};

    #[test]
    fn pooled_kept_conv_grad_equals_the_routed_signal_then_kept_conv_grad() {
        let (o, q) = (4, 5);
        // A sparse mask (the gathered form), then every weight kept (the dense form).
        pooled_case(&edge_mask(o, q, 0.4, 63));
        pooled_case(&Tensor::ones((o, q), candle_core::DType::F64, &Device::Cpu).unwrap());
    }

    fn pooled_case(m: &Tensor) {
        use awt_base::signal::PoolRoute;
        // Odd pool inputs (the last row is in no window), negative maxima (stopped by the ReLU) and
        // a blank plane (ties: the first maximum).
        let (n, k, h, w) = (3, 2, 7, 6);
        let (o, q) = m.dims2().unwrap();
        let (h2, w2) = (h / 2, w / 2);
        let d = Var::from_tensor(&rand(&[n * k, o, h2, w2], 60)).unwrap();
        let p = Var::from_tensor(&rand(&[n, q, h * w], 61)).unwrap();
        let mut xv = ((rand(&[n, o, h, w], 62) - 0.3).unwrap()).flatten_all().unwrap().to_vec1::<f64>().unwrap();
        xv[..h * w].iter_mut().for_each(|v| *v = 0.5);
        let x = Tensor::from_vec(xv, (n, o, h, w), &Device::Cpu).unwrap();
        let op = PooledKeptConvGrad::new(m).unwrap();
        let fused = |d: &Tensor, p: &Tensor| d.apply_op3(&x, p, op.clone()).unwrap();
        let routed = |d: &Tensor, p: &Tensor| {
            let r = d.apply_op2(&x, PoolRoute { after_relu: true }).unwrap();
            r.apply_op2(p, KeptConvGrad::new(m).unwrap()).unwrap()
        };
        let (fast, slow) = (fused(d.as_tensor(), p.as_tensor()), routed(d.as_tensor(), p.as_tensor()));
        assert!(max_diff(&fast, &slow) < 1e-13);
        let wt = rand(fast.dims(), 64);
        let grads = same_gradients(&fast, &slow, &wt, &[&d, &p], 1e-13);
        let inputs = [d.as_tensor().clone(), p.as_tensor().clone()];
        check_fd(&inputs, &grads, 11, &wt, &|xs| fused(&xs[0], &xs[1]));
        // Patches that need no gradient: the signals' gradient is the same, none for the patches.
        let fixed = p.as_tensor().detach();
        let g = fused(d.as_tensor(), &fixed).mul(&wt).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g.get(d.as_tensor()).unwrap(), &grads[0]) < 1e-13);
        assert!(g.get(&fixed).is_none());
        // In f32 against f64.
        let f = |t: &Tensor| t.to_dtype(candle_core::DType::F32).unwrap();
        let op32 = op.clone();
        let fast32 = f(d.as_tensor()).apply_op3(&f(&x), &f(p.as_tensor()), op32).unwrap();
        assert!(max_diff(&fast32.to_dtype(candle_core::DType::F64).unwrap(), &fast) < 1e-5);
        let bad = d.as_tensor().apply_op3(&x, &rand(&[n, q, h * w + 1], 65), op);
        assert!(bad.unwrap_err().to_string().contains("pooled-kept-conv-grad"));
    }
}
