//! 2×2 max-pool (stride 2, floor mode) as candle custom ops: the pool itself and the routing of a
//! signal back through it. Every position equal to its window's maximum receives the window's
//! gradient (the convention of candle's `max` backward, which the reshape + max form used before);
//! the windows of a NaN input propagate NaN forward and route nothing back. The same thing by
//! candle ops needs a reduction over a middle axis and several broadcasts, forward and backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let sl = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&sl[a..b]),
        None => candle_core::bail!("{what}: needs a contiguous input"),
    }
}

/// Geometry: `n` examples of `c` channels `h × w`; the signal has `r` rows per example.
#[derive(Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    r: usize,
}

impl Geo {
    fn new(x: &Shape, d_rows: usize, what: &str) -> Result<Geo> {
        let (n, c, h, w) = x.dims4()?;
        if n == 0 || !d_rows.is_multiple_of(n) {
            candle_core::bail!("{what}: {d_rows} signal rows for {n} examples");
        }
        Ok(Geo { n, c, h, w, r: d_rows / n })
    }
    fn pooled(&self) -> (usize, usize) {
        (self.h / 2, self.w / 2)
    }
}

/// Calls `f(plane, window index, [offsets of the window's maxima], count)` for every window of
/// every (example, channel) plane of `x`.
fn windows<T: WithDType>(x: &[T], g: Geo, mut f: impl FnMut(usize, usize, &[usize; 4], usize)) {
    let (h2, w2) = g.pooled();
    for plane in 0..g.n * g.c {
        let base = plane * g.h * g.w;
        for i in 0..h2 {
            for j in 0..w2 {
                let offs = [
                    base + 2 * i * g.w + 2 * j,
                    base + 2 * i * g.w + 2 * j + 1,
                    base + (2 * i + 1) * g.w + 2 * j,
                    base + (2 * i + 1) * g.w + 2 * j + 1,
                ];
                let mut m = x[offs[0]];
                for &o in &offs[1..] {
                    if x[o] > m {
                        m = x[o];
                    }
                }
                let mut hits = [0usize; 4];
                let mut k = 0;
                for &o in &offs {
                    if x[o] == m {
                        hits[k] = o;
                        k += 1;
                    }
                }
                f(plane, i * w2 + j, &hits, k);
            }
        }
    }
}

fn pool_t<T: WithDType>(x: &[T], g: Geo) -> Vec<T> {
    let (h2, w2) = g.pooled();
    let mut out = vec![T::zero(); g.n * g.c * h2 * w2];
    windows(x, g, |plane, win, hits, k| {
        // No position equals a NaN maximum (nor does any compare above NaN): propagate it.
        out[plane * h2 * w2 + win] = if k == 0 { T::from_f64(f64::NAN) } else { x[hits[0]] };
    });
    // A NaN that is not the first element never becomes the maximum by `>`: catch it too.
    if x.iter().any(|v| v.to_f64().is_nan()) {
        windows_nan(x, g, &mut out);
    }
    out
}

fn windows_nan<T: WithDType>(x: &[T], g: Geo, out: &mut [T]) {
    let (h2, w2) = g.pooled();
    for plane in 0..g.n * g.c {
        let base = plane * g.h * g.w;
        for i in 0..h2 {
            for j in 0..w2 {
                let any_nan = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .any(|(a, b)| x[base + (2 * i + a) * g.w + 2 * j + b].to_f64().is_nan());
                if any_nan {
                    out[plane * h2 * w2 + i * w2 + j] = T::from_f64(f64::NAN);
                }
            }
        }
    }
}

/// `d: (r·n, c, h/2, w/2)` → `(r·n, c, h, w)`: each window's value goes to its maxima in `x`.
fn route_t<T: WithDType>(x: &[T], d: &[T], g: Geo) -> Vec<T> {
    let (h2, w2) = g.pooled();
    let plane_in = g.h * g.w;
    let mut out = vec![T::zero(); g.r * g.n * g.c * plane_in];
    windows(x, g, |plane, win, hits, k| {
        let (ex, ch) = (plane / g.c, plane % g.c);
        for rr in 0..g.r {
            let row_plane = ((ex * g.r + rr) * g.c + ch) as isize - plane as isize;
            let v = d[((ex * g.r + rr) * g.c + ch) * h2 * w2 + win];
            for &o in &hits[..k] {
                out[(o as isize + row_plane * plane_in as isize) as usize] = v;
            }
        }
    });
    out
}

/// The adjoint of [`route_t`]: `(r·n, c, h, w)` → `(r·n, c, h/2, w/2)`, summing each window's maxima.
fn gather_t<T: WithDType>(x: &[T], gr: &[T], g: Geo) -> Vec<T> {
    let (h2, w2) = g.pooled();
    let plane_in = g.h * g.w;
    let mut out = vec![T::zero(); g.r * g.n * g.c * h2 * w2];
    windows(x, g, |plane, win, hits, k| {
        let (ex, ch) = (plane / g.c, plane % g.c);
        for rr in 0..g.r {
            let row = (ex * g.r + rr) * g.c + ch;
            let shift = row as isize - plane as isize;
            let mut s = T::zero();
            for &o in &hits[..k] {
                s += gr[(o as isize + shift * plane_in as isize) as usize];
            }
            out[row * h2 * w2 + win] = s;
        }
    });
    out
}

macro_rules! dispatch {
    ($what:expr, $s1:expr, $l1:expr, $rest:tt, |$x:ident $(, $y:ident)*| $body:expr) => {
        match $s1 {
            CpuStorage::F32(_) => {
                let $x = contiguous::<f32>($s1, $l1, $what)?;
                $(let $y = contiguous::<f32>($rest.0, $rest.1, $what)?;)*
                CpuStorage::F32($body)
            }
            CpuStorage::F64(_) => {
                let $x = contiguous::<f64>($s1, $l1, $what)?;
                $(let $y = contiguous::<f64>($rest.0, $rest.1, $what)?;)*
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: only f32 or f64", $what),
        }
    };
}

/// The pool: `(n, c, h, w) → (n, c, h/2, w/2)`.
#[derive(Clone, Copy, Debug)]
struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "awt-max-pool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geo::new(l.shape(), l.shape().dims4()?.0, "max-pool")?;
        let (h2, w2) = g.pooled();
        let st = dispatch!("max-pool", s, l, (), |x| pool_t(x, g));
        Ok((st, Shape::from((g.n, g.c, h2, w2))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &Route)?))
    }
}

/// `(x, d) → route(d)` through the pool windows of `x`; differentiable in `d`.
#[derive(Clone, Copy, Debug)]
struct Route;

impl CustomOp2 for Route {
    fn name(&self) -> &'static str {
        "awt-max-pool2-route"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, c, h2, w2) = l2.shape().dims4()?;
        let g = Geo::new(l1.shape(), rows, "max-pool route")?;
        if (c, h2, w2) != (g.c, g.h / 2, g.w / 2) {
            candle_core::bail!("max-pool route: signal {:?} does not fit input {:?}", l2.shape(), l1.shape());
        }
        let st = dispatch!("max-pool route", s1, l1, (s2, l2), |x, d| route_t(x, d, g));
        Ok((st, Shape::from((rows, g.c, g.h, g.w))))
    }

    fn bwd(&self, x: &Tensor, _d: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(x.apply_op2_no_bwd(&grad.contiguous()?, &Gather)?)))
    }
}

/// `(x, g) → gather(g)`, the adjoint of [`Route`] (no backward of its own).
#[derive(Clone, Copy, Debug)]
struct Gather;

impl CustomOp2 for Gather {
    fn name(&self) -> &'static str {
        "awt-max-pool2-gather"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, c, h, w) = l2.shape().dims4()?;
        let g = Geo::new(l1.shape(), rows, "max-pool gather")?;
        if (c, h, w) != (g.c, g.h, g.w) {
            candle_core::bail!("max-pool gather: gradient {:?} does not fit input {:?}", l2.shape(), l1.shape());
        }
        let st = dispatch!("max-pool gather", s1, l1, (s2, l2), |x, gr| gather_t(x, gr, g));
        Ok((st, Shape::from((rows, g.c, g.h / 2, g.w / 2))))
    }
}

/// 2×2 max-pool, stride 2, floor mode: `(b, c, h, w) → (b, c, h/2, w/2)`, differentiable (every
/// maximum of a window receives its gradient). Not candle's `max_pool2d`, whose CPU backward scales
/// the gradient by 1/4 (`shared/research/candle-probe.md` §8). Finite-difference tested in awt-nets.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool2)
}

/// Routes a signal `d: (r·b, c, h/2, w/2)` back through the max-pool windows of `x: (b, c, h, w)`
/// (rows `e·r .. e·r + r` of `d` belong to example `e`): the input gradient of the pool for each
/// row, `(r·b, c, h, w)`. `x` is a constant; the result is differentiable in `d`.
pub fn max_pool2_route(x: &Tensor, d: &Tensor) -> Result<Tensor> {
    x.detach().contiguous()?.apply_op2(&d.contiguous()?, Route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use candle_core::{DType, Device, Var};

    fn rand(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let mut r = Rng::new(seed);
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::from_vec((0..n).map(|_| r.normal()).collect::<Vec<f64>>(), shape, &Device::Cpu).unwrap()
    }

    /// The reshape + max formulation the ops replace (candle's `max` backward routes to every tie).
    fn reference(x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.dims4().unwrap();
        let x = x.narrow(2, 0, h / 2 * 2).unwrap().narrow(3, 0, w / 2 * 2).unwrap();
        x.reshape((b, c, h / 2, 2, w / 2, 2)).unwrap().max(5).unwrap().max(3).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn pool_and_its_gradient_equal_the_reshape_max_form_including_ties_and_odd_sizes() {
        for shape in [(2, 3, 6, 6), (1, 2, 7, 5)] {
            // Rounded values make ties common: each tied maximum must receive the gradient.
            let x = Var::from_tensor(&(rand(shape, 1) * 2.0).unwrap().round().unwrap()).unwrap();
            let (a, b) = (max_pool2(x.as_tensor()).unwrap(), reference(x.as_tensor()));
            assert_eq!(max_diff(&a, &b), 0.0);
            let r = rand(a.dims4().unwrap(), 2);
            let ga = a.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = b.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(max_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap()), 0.0);
        }
    }

    #[test]
    fn route_repeats_per_example_and_gather_is_its_adjoint() {
        let (n, r) = (2, 3);
        let x = rand((n, 2, 5, 6), 3);
        let d = Var::from_tensor(&rand((n * r, 2, 2, 3), 4)).unwrap();
        let out = max_pool2_route(&x, d.as_tensor()).unwrap();
        assert_eq!(out.dims(), &[n * r, 2, 5, 6]);
        // Row e·r + k is the pool's input gradient of example e for the signal row e·r + k.
        for row in 0..n * r {
            let xe = Var::from_tensor(&x.narrow(0, row / r, 1).unwrap()).unwrap();
            let de = d.as_tensor().narrow(0, row, 1).unwrap();
            let g = max_pool2(xe.as_tensor()).unwrap().mul(&de).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(max_diff(&out.narrow(0, row, 1).unwrap(), g.get(xe.as_tensor()).unwrap()), 0.0);
        }
        // ⟨route(d), g⟩ = ⟨d, gather(g)⟩, i.e. the backward with respect to d.
        let g = rand((n * r, 2, 5, 6), 5);
        let lhs = out.mul(&g).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let grads = out.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        let rhs = d.as_tensor().mul(grads.get(d.as_tensor()).unwrap()).unwrap().sum_all().unwrap();
        assert!((lhs - rhs.to_scalar::<f64>().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn nan_propagates_forward_and_bad_shapes_are_refused() {
        let mut v = vec![0.5f32; 16];
        v[5] = f32::NAN; // second row, second column: inside the first window, not its first element
        let x = Tensor::from_vec(v, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let y = max_pool2(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(y[0].is_nan() && y[1..].iter().all(|v| *v == 0.5), "{y:?}");
        let d = Tensor::zeros((3, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let x2 = Tensor::zeros((2, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2_route(&x2, &d).unwrap_err().to_string().contains("signal rows"));
    }
}
