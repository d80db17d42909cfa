//! A 2×2 average pool's backward signal as one CPU custom op, [`AvgRoute`]: each window's value,
//! times ¼, to its four positions (zero on an odd last row or column), optionally times the mask
//! of the ReLU before the pool in the same pass. The structured NTK pushes one signal per class
//! through it; built from candle ops (a broadcast, a scale, a reshape copy, a pad, then the ReLU's
//! map) the largest signal tensor of an average-pool net was walked four times with a strided index
//! per element. Its adjoint sums each window times ¼. Tested against candle's autograd of
//! [`avg_pool2`](crate::avg_pool2), the ReLU-fused form against the two maps in turn, gradients
//! included, and by central finite differences (tests below).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::conv::{cpu_slice, dispatch2};
use crate::signal::{apply, repeats};

/// A 2×2 average pool's backward signal: `d: (n·r, c, h/2, w/2)` to `(n·r, c, h, w)`, signal
/// `i·r + s` reading example `i` of the pool's input `x: (n, c, h, w)` (only its shape, unless
/// `after_relu`). Differentiable in `d` (its adjoint sums each window); `x` is a constant.
#[derive(Clone, Copy, Debug)]
pub struct AvgRoute {
    /// The pool's input is a ReLU's output: apply that ReLU's backward too, in the same pass (a
    /// position passes the signal where it is positive, i.e. where the ReLU's input was).
    pub after_relu: bool,
}

/// The adjoint of [`AvgRoute`]: `(n·r, c, h, w) → (n·r, c, h/2, w/2)`, each window's sum times ¼
/// (over its positive positions with `after_relu`).
#[derive(Clone, Copy, Debug)]
struct AvgGather {
    after_relu: bool,
}

/// The shapes of one call: examples, signals per example, channels, input plane.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    r: usize,
    c: usize,
    h: usize,
    w: usize,
}

/// Spread (`gather = false`: pooled-size `d` → full-size result) or gather (`true`: full-size `d` →
/// pooled-size result), one signal per parallel task.
fn route<T: WithDType>(d: &[T], x: &[T], dm: Dims, gather: bool, relu: bool) -> Vec<T> {
    let Dims { n, r, c, h, w } = dm;
    let (h2, w2) = (h / 2, w / 2);
    let (small, big) = (h2 * w2, h * w);
    let (in_plane, out_plane) = if gather { (big, small) } else { (small, big) };
    let mut out = vec![T::zero(); n * r * c * out_plane];
    if out.is_empty() {
        return out;
    }
    let quarter = T::from_f64(0.25);
    out.par_chunks_mut(c * out_plane).enumerate().for_each(|(sig, o)| {
        let ex = sig / r;
        for ci in 0..c {
            let plane = &x[(ex * c + ci) * big..][..big];
            let src = &d[(sig * c + ci) * in_plane..][..in_plane];
            let dst = &mut o[ci * out_plane..][..out_plane];
            for rr in 0..h2 {
                for q in 0..w2 {
                    let mut acc = T::zero();
                    for at in [
                        2 * rr * w + 2 * q,
                        2 * rr * w + 2 * q + 1,
                        (2 * rr + 1) * w + 2 * q,
                        (2 * rr + 1) * w + 2 * q + 1,
                    ] {
                        if relu && plane[at] <= T::zero() {
                            continue;
                        }
                        if gather {
                            acc += src[at];
                        } else {
                            dst[at] = src[rr * w2 + q] * quarter;
                        }
                    }
                    if gather {
                        dst[rr * w2 + q] = acc * quarter;
                    }
                }
            }
        }
    });
    out
}

/// The forward pass of both ops: checks `d` (pooled-size planes when spreading, full-size when
/// gathering) against the pool's input `x` and routes.
fn fwd(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    gather: bool,
    relu: bool,
) -> Result<(CpuStorage, Shape)> {
    let what = if gather { "avg-gather" } else { "avg-route" };
    let (nn, dc, dh, dw) = l1.shape().dims4()?;
    let (n, c, h, w) = l2.shape().dims4()?;
    let r = repeats(nn, n, what)?;
    if (dc, dh, dw) != if gather { (c, h, w) } else { (c, h / 2, w / 2) } {
        candle_core::bail!("{what}: signals {:?} do not fit pool inputs {:?}", l1.shape(), l2.shape());
    }
    let dm = Dims { n, r, c, h, w };
    let st = dispatch2!(what, (s1, l1), (s2, l2), |d, x| route(d, x, dm, gather, relu));
    let (oh, ow) = if gather { (h / 2, w / 2) } else { (h, w) };
    Ok((st, Shape::from((n * r, c, oh, ow))))
}

impl CustomOp2 for AvgRoute {
    fn name(&self) -> &'static str {
        "awt-avg-route"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fwd(s1, l1, s2, l2, false, self.after_relu)
    }

    fn bwd(&self, _d: &Tensor, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(apply(grad, x, AvgGather { after_relu: self.after_relu })?), None))
    }
}

impl CustomOp2 for AvgGather {
    fn name(&self) -> &'static str {
        "awt-avg-gather"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fwd(s1, l1, s2, l2, true, self.after_relu)
    }

    fn bwd(&self, _d: &Tensor, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(apply(grad, x, AvgRoute { after_relu: self.after_relu })?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::ReluRoute;
    use crate::testing::{check_fd, max_diff, rand, same_gradients};
    use candle_core::Var;

    #[test]
    fn avg_route_is_the_average_pool_input_gradient_with_odd_edges() {
        // Odd sizes: the last row and column get no signal.
        let (n, r, c, h, w) = (2, 3, 2, 5, 7);
        let x = rand(&[n, c, h, w], 30);
        let d = Var::from_tensor(&rand(&[n * r, c, h / 2, w / 2], 31)).unwrap();
        let fast = d.as_tensor().apply_op2(&x, AvgRoute { after_relu: false }).unwrap();
        // Signal s of example i is the input gradient of ⟨avg_pool2(x_i), d_s⟩.
        for s in 0..n * r {
            let xv = Var::from_tensor(&x.narrow(0, s / r, 1).unwrap()).unwrap();
            let pooled = crate::avg_pool2(xv.as_tensor()).unwrap();
            let gr =
                pooled.mul(&d.as_tensor().narrow(0, s, 1).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(max_diff(gr.get(xv.as_tensor()).unwrap(), &fast.narrow(0, s, 1).unwrap()), 0.0);
        }
        // Its adjoint (the window sums) is its gradient, and finite differences agree.
        let g = rand(fast.dims(), 32);
        let op = |xs: &[Tensor]| xs[0].apply_op2(&x, AvgRoute { after_relu: false }).unwrap();
        let grads = op(&[d.as_tensor().clone()]).mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        let gd = grads.get(d.as_tensor()).unwrap().clone();
        assert!(max_diff(&gd, &crate::avg_pool2(&g).unwrap()) < 1e-14, "the adjoint is not the window mean");
        check_fd(&[d.as_tensor().clone()], &[gd], 9, &g, &op);
        // Its adjoint's own gradient is the spread again.
        let up = Var::from_tensor(&g).unwrap();
        let down = up.as_tensor().apply_op2(&x, AvgGather { after_relu: false }).unwrap();
        let gg = rand(down.dims(), 33);
        let back = down.mul(&gg).unwrap().sum_all().unwrap().backward().unwrap();
        let spread = gg.apply_op2(&x, AvgRoute { after_relu: false }).unwrap();
        assert_eq!(max_diff(back.get(up.as_tensor()).unwrap(), &spread), 0.0);
        // Shapes that do not fit are refused.
        assert!(d.as_tensor().apply_op2(&rand(&[n, c, h + 2, w], 34), AvgRoute { after_relu: false }).is_err());
        assert!(d.as_tensor().apply_op2(&rand(&[4, c, h, w], 34), AvgRoute { after_relu: false }).is_err());
    }

    #[test]
    fn avg_route_after_relu_equals_the_pool_then_the_relu_signal_with_gradients() {
        let (n, r, c, h, w) = (2, 3, 2, 6, 5);
        // Pre-activations with both signs, so some positions of every window are cut by the ReLU.
        let z = rand(&[n, c, h, w], 40).affine(2.0, -1.0).unwrap();
        let x = z.relu().unwrap();
        let d = Var::from_tensor(&rand(&[n * r, c, h / 2, w / 2], 41)).unwrap();
        let fused = d.as_tensor().apply_op2(&x, AvgRoute { after_relu: true }).unwrap();
        let two =
            d.as_tensor().apply_op2(&x, AvgRoute { after_relu: false }).unwrap().apply_op2(&z, ReluRoute).unwrap();
        assert_eq!(max_diff(&fused, &two), 0.0);
        let g = rand(fused.dims(), 42);
        let grads = same_gradients(&fused, &two, &g, &[&d], 1e-15);
        let op = |xs: &[Tensor]| xs[0].apply_op2(&x, AvgRoute { after_relu: true }).unwrap();
        check_fd(&[d.as_tensor().clone()], &grads, 5, &g, &op);
    }
}
