//! PGD's ℓ∞ ascent step and projection as one CPU custom op (re-exported as
//! `awt_base::fused::LinfStep`): one pass instead of eight elementwise candle ops with a fresh buffer
//! each; APGD's ℓ∞ update with its momentum ([`apgd_linf_step`]) and the row selection its
//! bookkeeping makes at every iteration ([`select_rows`]), likewise.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};

use crate::conv::{cpu_slice, dispatch2, dispatch3};
use crate::kernels::with_slice;

/// One ℓ∞ ascent step of PGD in a single pass: `clamp(clamp(x_adv + α·sign(g), x − ε, x + ε), 0, 1)`
/// for inputs `(x_adv, g, x)` of one shape (sign(0) = 0, as candle's `sign`). Built from candle ops
/// the step is eight elementwise passes with a fresh buffer each; it carries no gradient (the
/// iterate is detached).
#[derive(Clone, Copy, Debug)]
pub struct LinfStep {
    /// Step size α.
    pub alpha: f64,
    /// Radius ε.
    pub eps: f64,
}

fn linf_step<T: WithDType>(xa: &[T], g: &[T], x: &[T], alpha: f64, eps: f64) -> Vec<T> {
    let (alpha, eps) = (T::from_f64(alpha), T::from_f64(eps));
    let (zero, one) = (T::zero(), T::one());
    // Selects, not branches: the gradient's sign is unpredictable, and a branchy loop mispredicted
    // on most elements (13 % of an MLP PGD step).
    // `clamp(v, lo, hi)` as two selects; a NaN stays NaN, as in the if-else chain it replaces.
    let clamp = |v: T, lo: T, hi: T| {
        let v = if v < lo { lo } else { v };
        if v > hi { hi } else { v }
    };
    let mut out = vec![zero; xa.len()];
    for (((o, &a), &gi), &x0) in out.iter_mut().zip(xa).zip(g).zip(x) {
        let up = if gi > zero { alpha } else { zero };
        let down = if gi < zero { alpha } else { zero };
        // a + α, a − α or a, exactly (adding or subtracting zero changes nothing).
        *o = clamp(clamp(a + up - down, x0 - eps, x0 + eps), zero, one);
    }
    out
}

impl CustomOp3 for LinfStep {
    fn name(&self) -> &'static str {
        "awt-linf-step"
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
        if l1.shape() != l2.shape() || l1.shape() != l3.shape() {
            candle_core::bail!("linf step: shapes {:?}, {:?}, {:?} differ", l1.shape(), l2.shape(), l3.shape());
        }
        let (alpha, eps) = (self.alpha, self.eps);
        let st = dispatch3!("linf step", (s1, l1), (s2, l2), (s3, l3), |xa, g, x| linf_step(xa, g, x, alpha, eps));
        Ok((st, l1.shape().clone()))
    }
}

/// APGD's ℓ∞ update (Croce & Hein 2020, Alg. 1) in one pass over CPU tensors of one shape `(n, …)`:
/// `z = P(x_k + η_i·sign(g))` and, given `x_prev`, `x_{k+1} = P(x_k + 0.75 (z − x_k) + 0.25 (x_k − x_{k−1}))`
/// (without it, `z`), where `P` projects onto the ε-ball around `x` and the [0, 1] box and `η_i` is
/// row `i`'s step size. Each element goes through the operations candle's composition of the
/// update performs, in the same order and precision (the step size rounded to the dtype, the
/// momentum's `v·0.75 + 0` as candle's `affine`), so the result equals that composition's (zeros'
/// signs aside). `None` for a dtype other than f32 and f64.
pub fn apgd_linf_step(
    x_cur: &Tensor,
    grad: &Tensor,
    x: &Tensor,
    x_prev: Option<&Tensor>,
    eta: &[f64],
    eps: f64,
) -> Result<Option<Tensor>> {
    let n = x_cur.dim(0)?;
    for t in [Some(grad), Some(x), x_prev].into_iter().flatten() {
        if t.shape() != x_cur.shape() || t.dtype() != x_cur.dtype() {
            candle_core::bail!(
                "apgd step: {:?} {:?} against {:?} {:?}",
                t.shape(),
                t.dtype(),
                x_cur.shape(),
                x_cur.dtype()
            );
        }
    }
    if eta.len() != n {
        candle_core::bail!("apgd step: {} step sizes for {n} rows", eta.len());
    }
    // The three tensors every step reads, then the previous iterate where there is one.
    fn typed<T: WithDType>(t: [&Tensor; 3], x_prev: Option<&Tensor>, eta: &[f64], eps: f64) -> Result<Vec<T>> {
        let [xc, g, x0] = t.map(|t| t.contiguous());
        let (xc, g, x0) = (xc?, g?, x0?);
        let step = |xp: Option<&[T]>| {
            with_slice::<T, _>(&xc, |xc| {
                with_slice::<T, _>(&g, |g| with_slice::<T, _>(&x0, |x0| apgd_rows(xc, g, x0, xp, eta, eps)))
            })
        };
        match x_prev {
            None => step(None)??,
            Some(p) => with_slice::<T, _>(&p.contiguous()?, |p| step(Some(p)))???,
        }
    }
    let t = [x_cur, grad, x];
    let out = match x_cur.dtype() {
        DType::F32 => Tensor::from_vec(typed::<f32>(t, x_prev, eta, eps)?, x_cur.shape(), x_cur.device())?,
        DType::F64 => Tensor::from_vec(typed::<f64>(t, x_prev, eta, eps)?, x_cur.shape(), x_cur.device())?,
        _ => return Ok(None),
    };
    Ok(Some(out))
}

fn apgd_rows<T: WithDType>(xc: &[T], g: &[T], x: &[T], xp: Option<&[T]>, eta: &[f64], eps: f64) -> Vec<T> {
    let row = xc.len() / eta.len().max(1);
    let eps = T::from_f64(eps);
    let (zero, one, a, b) = (T::zero(), T::one(), T::from_f64(0.75), T::from_f64(0.25));
    // Candle's `clamp` is `maximum` then `minimum`: `if v < lo { lo } else { v }`, then `if v > hi { hi } else { v }`.
    let clamp = |v: T, lo: T, hi: T| {
        let v = if v < lo { lo } else { v };
        if v > hi { hi } else { v }
    };
    let mut out = vec![zero; xc.len()];
    for (i, &e) in eta.iter().enumerate() {
        let e = T::from_f64(e);
        let r = i * row..(i + 1) * row;
        let (o, xc, g, x) = (&mut out[r.clone()], &xc[r.clone()], &g[r.clone()], &x[r.clone()]);
        // x + sign(g)·η as a select (sign(g)·η is η, −η or 0 exactly; x + (−η) is x − η).
        let z = |j: usize| {
            let up = if g[j] > zero { e } else { zero };
            let down = if g[j] < zero { e } else { zero };
            clamp(clamp(xc[j] + up - down, x[j] - eps, x[j] + eps), zero, one)
        };
        match xp {
            None => o.iter_mut().enumerate().for_each(|(j, o)| *o = z(j)),
            Some(p) => {
                let p = &p[r];
                for (j, o) in o.iter_mut().enumerate() {
                    let m = ((z(j) - xc[j]) * a + zero) + ((xc[j] - p[j]) * b + zero);
                    *o = clamp(clamp(xc[j] + m, x[j] - eps, x[j] + eps), zero, one);
                }
            }
        }
    }
    out
}

/// Row `i` of `a` where `take[i]` is set, else row `i` of `b`, for two CPU tensors of one shape and
/// dtype `(n, …)`: row copies in place of candle's `where_cond` over a broadcast mask (a custom op,
/// `SelectRows`, recorded without a backward: the attacks' iterates are detached). `None` for a
/// dtype other than f32 and f64.
pub fn select_rows(take: &[u8], a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    if a.shape() != b.shape() || a.dtype() != b.dtype() || a.dim(0)? != take.len() {
        candle_core::bail!("select rows: {} flags for {:?} and {:?}", take.len(), a.shape(), b.shape());
    }
    if !matches!(a.dtype(), DType::F32 | DType::F64) {
        return Ok(None);
    }
    Ok(Some(a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &SelectRows { take: take.to_vec() })?))
}

/// The op of [`select_rows`]: row `i` of the first input where `take[i]` is set, else of the second.
struct SelectRows {
    take: Vec<u8>,
}

impl CustomOp2 for SelectRows {
    fn name(&self) -> &'static str {
        "awt-select-rows"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let take = &self.take;
        let st = dispatch2!("select rows", (s1, l1), (s2, l2), |a, b| {
            let row = a.len() / take.len().max(1);
            let mut out = Vec::with_capacity(a.len());
            for (i, &t) in take.iter().enumerate() {
                out.extend_from_slice(&(if t != 0 { a } else { b })[i * row..(i + 1) * row]);
            }
            out
        });
        Ok((st, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, rand};
    use candle_core::Tensor;

    #[test]
    fn linf_step_equals_the_candle_composition() {
        for dtype in [candle_core::DType::F64, candle_core::DType::F32] {
            let x = (rand(&[6, 50], 11).affine(0.5, 0.5).unwrap()).clamp(0.0, 1.0).unwrap().to_dtype(dtype).unwrap();
            let xa = (&x + rand(&[6, 50], 12).affine(0.15, 0.0).unwrap().to_dtype(dtype).unwrap()).unwrap();
            // Zeros in the gradient: sign(0) = 0 leaves the coordinate where it is.
            let g = rand(&[6, 50], 13).to_dtype(dtype).unwrap();
            let g = g.broadcast_mul(&rand(&[6, 50], 14).ge(0.0).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let (alpha, eps) = (0.04, 0.1);
            let fast = xa.apply_op3(&g, &x, LinfStep { alpha, eps }).unwrap();
            let stepped = (&xa + g.sign().unwrap().affine(alpha, 0.0).unwrap()).unwrap();
            let slow = stepped
                .clamp(&x.affine(1.0, -eps).unwrap(), &x.affine(1.0, eps).unwrap())
                .unwrap()
                .clamp(0.0, 1.0)
                .unwrap();
            let tol = if dtype == candle_core::DType::F64 { 1e-15 } else { 1e-7 };
            let f64s = |t: &Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
            assert!(max_diff(&f64s(&fast), &f64s(&slow)) < tol, "{dtype:?}");
            let v = fast.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1::<f64>().unwrap();
            assert!(v.contains(&0.0) && v.iter().all(|a| (0.0..=1.0).contains(a)), "box not reached");
        }
    }
}

#[cfg(test)]
mod apgd_tests {
    use super::*;
    use crate::testing::rand;

    /// The fused APGD update equals candle's composition element for element (f32 and f64, with
    /// and without momentum, zero gradients, a step size per row), and `select_rows` equals
    /// `where_cond` over the broadcast flags.
    #[test]
    fn apgd_step_and_row_selection_equal_the_candle_ops() {
        for dtype in [DType::F64, DType::F32] {
            let t = |seed, s: f64| rand(&[5, 3, 8], seed).affine(s, 0.5).unwrap().to_dtype(dtype).unwrap();
            let x = t(1, 0.5).clamp(0.0, 1.0).unwrap();
            let (xc, xp) = (
                (&x + t(2, 0.1).affine(1.0, -0.5).unwrap()).unwrap(),
                (&x + t(3, 0.1).affine(1.0, -0.5).unwrap()).unwrap(),
            );
            let g = t(4, 1.0)
                .affine(1.0, -0.5)
                .unwrap()
                .broadcast_mul(&t(5, 1.0).ge(0.6).unwrap().to_dtype(dtype).unwrap())
                .unwrap();
            let (eta, eps) = ([0.2, 0.1, 0.05, 0.025, 0.3], 0.1);
            let eta_t = Tensor::from_vec(eta.to_vec(), (5, 1, 1), x.device()).unwrap().to_dtype(dtype).unwrap();
            let project =
                |v: &Tensor| v.clamp(&(&x - eps).unwrap(), &(&x + eps).unwrap()).unwrap().clamp(0.0, 1.0).unwrap();
            let z = project(&(&xc + g.sign().unwrap().broadcast_mul(&eta_t).unwrap()).unwrap());
            let m = ((&z - &xc).unwrap() * 0.75).unwrap().add(&((&xc - &xp).unwrap() * 0.25).unwrap()).unwrap();
            let next = project(&(&xc + m).unwrap());
            let v = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            let fused = |p| apgd_linf_step(&xc, &g, &x, p, &eta, eps).unwrap().unwrap();
            assert_eq!(v(&fused(None)), v(&z), "{dtype:?} first step");
            assert_eq!(v(&fused(Some(&xp))), v(&next), "{dtype:?} momentum step");
            assert_ne!(v(&z), v(&next), "the momentum changes something");
            let take = [1u8, 0, 0, 1, 1];
            let mask = Tensor::from_vec(take.to_vec(), (5, 1, 1), x.device()).unwrap().broadcast_as(x.shape()).unwrap();
            let picked = select_rows(&take, &xc, &xp).unwrap().unwrap();
            assert_eq!(v(&picked), v(&mask.where_cond(&xc, &xp).unwrap()), "{dtype:?} rows");
        }
        let x = rand(&[4, 6], 9);
        assert!(
            apgd_linf_step(&x, &x, &x, None, &[0.1; 3], 0.1)
                .unwrap_err()
                .to_string()
                .contains("3 step sizes for 4 rows")
        );
        assert!(select_rows(&[1, 0], &x, &x).is_err());
    }
}
