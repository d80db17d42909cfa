//! Convolutions for the zoo's layers (stride 1, no padding): im2col and col2im as candle custom ops
//! with backward passes (each is the other's adjoint), the forward convolution as im2col + one
//! matmul, and its adjoint (the backward signal to the input). candle's own CPU `conv2d` is several
//! times slower than im2col + matmul for these layers. Checked against slice-based and autograd
//! formulations in the tests.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};

use crate::product::matmul;

/// `(n, c, h, w) → (n, c·kh·kw, oh·ow)`, column `(ci·kh + dy)·kw + dx`, position `y·ow + x`.
#[derive(Clone, Copy, Debug)]
pub struct Im2col {
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

/// The adjoint of [`Im2col`]: `(n, c·kh·kw, oh·ow) → (n, c, h, w)`, summing overlapping patches.
#[derive(Clone, Copy, Debug)]
pub struct Col2im {
    /// Channels of the image.
    pub c: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

/// The elements of a contiguous CPU tensor as a slice (custom ops make their inputs contiguous).
pub fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    crate::device::kernel_gate("a custom op")?;
    let sl = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&sl[a..b]),
        None => candle_core::bail!("custom ops need a contiguous input"),
    }
}

/// Dispatches `$body` on three f32 or three f64 CPU storages bound as slices `$a, $b, $c` of one
/// element type, wrapping its `Vec` result back into a storage; `$name` labels the dtype error.
/// Shared by the custom ops of `fused` and `step`.
macro_rules! dispatch3 {
    ($name:expr, ($s1:ident, $l1:ident), ($s2:ident, $l2:ident), ($s3:ident, $l3:ident), |$a:ident, $b:ident, $c:ident| $body:expr) => {{
        use candle_core::CpuStorage as S;
        use $crate::conv::cpu_slice as sl;
        match ($s1, $s2, $s3) {
            (S::F32(_), S::F32(_), S::F32(_)) => {
                let ($a, $b, $c) = (sl::<f32>($s1, $l1)?, sl::<f32>($s2, $l2)?, sl::<f32>($s3, $l3)?);
                S::F32($body)
            }
            (S::F64(_), S::F64(_), S::F64(_)) => {
                let ($a, $b, $c) = (sl::<f64>($s1, $l1)?, sl::<f64>($s2, $l2)?, sl::<f64>($s3, $l3)?);
                S::F64($body)
            }
            _ => candle_core::bail!("{}: only f32 or f64, all the same", $name),
        }
    }};
}
pub(crate) use dispatch3;

/// Runs `$body` on two f32 or two f64 storages bound as slices, wrapping its `Vec` result.
macro_rules! dispatch2 {
    ($name:expr, ($s1:ident, $l1:ident), ($s2:ident, $l2:ident), |$a:ident, $b:ident| $body:expr) => {{
        match ($s1, $s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let ($a, $b) = (cpu_slice::<f32>($s1, $l1)?, cpu_slice::<f32>($s2, $l2)?);
                CpuStorage::F32($body)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let ($a, $b) = (cpu_slice::<f64>($s1, $l1)?, cpu_slice::<f64>($s2, $l2)?);
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: only f32 or f64, both the same", $name),
        }
    }};
}

pub(crate) use dispatch2;

/// Writes the patches of `n` images `(c, h, w)` from `src` into `dst` as `(n, c·kh·kw, oh·ow)`:
/// row `(ci·kh + dy)·kw + dx` holds each output position's input at offset `(dy, dx)`.
pub fn im2col_into<T: WithDType>(
    src: &[T],
    dst: &mut [T],
    (n, c, h, w): (usize, usize, usize, usize),
    (kh, kw): (usize, usize),
) {
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let l = oh * ow;
    for b in 0..n {
        for ci in 0..c {
            let img = &src[(b * c + ci) * h * w..][..h * w];
            for dy in 0..kh {
                for dx in 0..kw {
                    let row = ((b * c + ci) * kh + dy) * kw + dx;
                    let out = &mut dst[row * l..][..l];
                    for y in 0..oh {
                        out[y * ow..][..ow].copy_from_slice(&img[(y + dy) * w + dx..][..ow]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_into`]: adds patch gradients `(n, c·kh·kw, oh·ow)` onto `dst` `(n, c, h, w)`.
pub fn col2im_add<T: WithDType>(
    src: &[T],
    dst: &mut [T],
    (n, c, h, w): (usize, usize, usize, usize),
    (kh, kw): (usize, usize),
) {
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let l = oh * ow;
    for b in 0..n {
        for ci in 0..c {
            let img = &mut dst[(b * c + ci) * h * w..][..h * w];
            for dy in 0..kh {
                for dx in 0..kw {
                    let row = ((b * c + ci) * kh + dy) * kw + dx;
                    let col = &src[row * l..][..l];
                    for y in 0..oh {
                        for (a, s) in img[(y + dy) * w + dx..][..ow].iter_mut().zip(&col[y * ow..][..ow]) {
                            *a += *s;
                        }
                    }
                }
            }
        }
    }
}

fn im2col_t<T: WithDType>(src: &[T], n: usize, c: usize, h: usize, w: usize, kh: usize, kw: usize) -> Vec<T> {
    let mut dst = vec![T::zero(); n * c * kh * kw * (h - kh + 1) * (w - kw + 1)];
    im2col_into(src, &mut dst, (n, c, h, w), (kh, kw));
    dst
}

fn col2im_t<T: WithDType>(src: &[T], n: usize, c: usize, h: usize, w: usize, kh: usize, kw: usize) -> Vec<T> {
    let mut dst = vec![T::zero(); n * c * h * w];
    col2im_add(src, &mut dst, (n, c, h, w), (kh, kw));
    dst
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "awt-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let (kh, kw) = (self.kh, self.kw);
        let shape = Shape::from((n, c * kh * kw, (h - kh + 1) * (w - kw + 1)));
        let st = match s {
            CpuStorage::F32(_) => CpuStorage::F32(im2col_t(cpu_slice::<f32>(s, l)?, n, c, h, w, kh, kw)),
            CpuStorage::F64(_) => CpuStorage::F64(im2col_t(cpu_slice::<f64>(s, l)?, n, c, h, w, kh, kw)),
            _ => candle_core::bail!("im2col: only f32 and f64"),
        };
        Ok((st, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, c, h, w) = arg.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1(Col2im { c, h, w, kh: self.kh, kw: self.kw })?))
    }
}

impl CustomOp1 for Col2im {
    fn name(&self) -> &'static str {
        "awt-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, _, _) = l.shape().dims3()?;
        let Col2im { c, h, w, kh, kw } = *self;
        let st = match s {
            CpuStorage::F32(_) => CpuStorage::F32(col2im_t(cpu_slice::<f32>(s, l)?, n, c, h, w, kh, kw)),
            CpuStorage::F64(_) => CpuStorage::F64(col2im_t(cpu_slice::<f64>(s, l)?, n, c, h, w, kh, kw)),
            _ => candle_core::bail!("col2im: only f32 and f64"),
        };
        Ok((st, Shape::from((n, c, h, w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2col { kh: self.kh, kw: self.kw })?))
    }
}

/// Differentiable patches of `a: (n, c, h, w)`: the custom op on the CPU, shifted slices elsewhere.
pub fn im2col(a: &Tensor, kh: usize, kw: usize) -> Result<Tensor> {
    if crate::device::cpu_kernels(a) {
        return a.contiguous()?.apply_op1(Im2col { kh, kw });
    }
    let (n, c, h, w) = a.dims4()?;
    if kh > h || kw > w || kh == 0 || kw == 0 {
        candle_core::bail!("im2col: a {kh}x{kw} kernel does not fit a {h}x{w} image");
    }
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let mut shifts = Vec::with_capacity(kh * kw);
    for dy in 0..kh {
        for dx in 0..kw {
            shifts.push(a.narrow(2, dy, oh)?.narrow(3, dx, ow)?);
        }
    }
    Tensor::stack(&shifts, 2)?.reshape((n, c * kh * kw, oh * ow))
}

/// Stride-1, unpadded convolution as im2col + one matmul (differentiable through the custom op's
/// backward): `x: (n, c, h, w)`, `w: (o, c, kh, kw)` → `(n, o, h−kh+1, w−kw+1)`. candle's CPU
/// `conv2d` gives the same numbers more slowly (compared in the tests); other devices use it.
pub fn conv2d(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !crate::device::cpu_kernels(x) {
        #[allow(clippy::disallowed_methods)] // not the CPU: candle's convolution is the device's own
        return x.conv2d(w, 0, 1, 1, 1);
    }
    let (n, _, h, wd) = x.dims4()?;
    let (o, c, kh, kw) = w.dims4()?;
    let (oh, ow) = (h - kh + 1, wd - kw + 1);
    let cols = im2col(x, kh, kw)?; // (n, c·kh·kw, oh·ow)
    // (o, c·kh·kw) @ (c·kh·kw, n·oh·ow) → (o, n, oh·ow) → (n, o, oh, ow)
    let cols = cols.transpose(0, 1)?.reshape((c * kh * kw, n * oh * ow))?;
    matmul(&w.reshape((o, c * kh * kw))?, &cols)?.reshape((o, n, oh, ow))?.transpose(0, 1)?.contiguous()
}

/// Backward signal through a stride-1 unpadded convolution, differentiable in `d` and `w`:
/// `col2im(Wᵀ D)`, `d: (N, o, oh, ow)`, `w: (o, c, kh, kw)` → `(N, c, oh+kh−1, ow+kw−1)`.
pub fn conv_signal(d: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !crate::device::cpu_kernels(d) {
        // The adjoint of the convolution: candle's transposed convolution (any device).
        #[allow(clippy::disallowed_methods)] // not the CPU: candle's convolution is the device's own
        return d.conv_transpose2d(w, 0, 0, 1, 1);
    }
    let (nn, o, oh, ow) = d.dims4()?;
    let (_, c, kh, kw) = w.dims4()?;
    let l = oh * ow;
    // (c·kk, o) @ (o, N·L) → (c·kk, N, L) → (N, c·kk, L)
    let dr = d.reshape((nn, o, l))?.transpose(0, 1)?.reshape((o, nn * l))?;
    let cols = matmul(&w.reshape((o, c * kh * kw))?.t()?, &dr)?
        .reshape((c * kh * kw, nn, l))?
        .transpose(0, 1)?
        .contiguous()?;
    cols.apply_op1(Col2im { c, h: oh + kh - 1, w: ow + kw - 1, kh, kw })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // candle's convolution is the reference here
mod tests {
    use super::*;
    use crate::testing::{max_diff, rand, same_gradients};
    use candle_core::Var;

    #[test]
    fn im2col_equals_shifted_slices_and_col2im_is_its_adjoint() {
        let a = rand(&[2, 3, 7, 6], 1);
        let p = im2col(&a, 3, 2).unwrap();
        let mut shifts = Vec::new();
        for dy in 0..3 {
            for dx in 0..2 {
                shifts.push(a.narrow(2, dy, 5).unwrap().narrow(3, dx, 5).unwrap());
            }
        }
        let slices = Tensor::stack(&shifts, 2).unwrap().reshape((2, 3 * 6, 25)).unwrap();
        assert_eq!(max_diff(&p, &slices), 0.0);
        // ⟨im2col(a), g⟩ = ⟨a, col2im(g)⟩
        let g = rand(&[2, 18, 25], 2);
        let back = g.apply_op1(Col2im { c: 3, h: 7, w: 6, kh: 3, kw: 2 }).unwrap();
        let lhs = p.mul(&g).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let rhs = a.mul(&back).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!((lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0));
    }

    #[test]
    fn im2col_convolution_equals_candles_forward_and_gradients() {
        let x = Var::from_tensor(&rand(&[3, 2, 9, 8], 20)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 2, 3, 3], 21)).unwrap();
        let ours = conv2d(x.as_tensor(), w.as_tensor()).unwrap();
        let theirs = x.as_tensor().conv2d(w.as_tensor(), 0, 1, 1, 1).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let r = rand(ours.dims(), 22);
        same_gradients(&ours, &theirs, &r, &[&x, &w], 1e-11);
    }

    #[test]
    fn conv_signal_is_the_convolution_input_gradient_and_differentiable() {
        let x = Var::from_tensor(&rand(&[2, 3, 8, 7], 3)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 3, 3, 3], 4)).unwrap();
        let d = rand(&[2, 4, 6, 5], 5);
        // Autograd's input gradient of ⟨conv(x, w), d⟩ is the signal.
        let y = x.as_tensor().conv2d(w.as_tensor(), 0, 1, 1, 1).unwrap();
        let g = y.mul(&d).unwrap().sum_all().unwrap().backward().unwrap();
        let s = conv_signal(&d, w.as_tensor()).unwrap();
        assert!(max_diff(g.get(x.as_tensor()).unwrap(), &s) < 1e-12);
        // And its own gradient with respect to w matches the slice-and-conv formulation's.
        let r = rand(&[2, 3, 8, 7], 6);
        let gw = s.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = gw.get(w.as_tensor()).unwrap().clone();
        // ⟨conv_signal(d, w), r⟩ = ⟨d, conv(r, w)⟩, so its w-gradient is that of ⟨d, conv(r, w)⟩.
        let alt = r.conv2d(w.as_tensor(), 0, 1, 1, 1).unwrap().mul(&d).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(&gw, alt.get(w.as_tensor()).unwrap()) < 1e-10);
    }

    #[test]
    fn the_device_generic_convolution_paths_equal_the_custom_ops_with_gradients() {
        let x = Var::from_tensor(&rand(&[2, 3, 9, 8], 30)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 3, 3, 2], 31)).unwrap();
        let d = Var::from_tensor(&rand(&[2, 4, 7, 7], 32)).unwrap();
        let fast = [
            im2col(x.as_tensor(), 3, 2).unwrap(),
            conv2d(x.as_tensor(), w.as_tensor()).unwrap(),
            conv_signal(d.as_tensor(), w.as_tensor()).unwrap(),
        ];
        let generic = crate::device::generic_path(|| {
            [
                im2col(x.as_tensor(), 3, 2).unwrap(),
                conv2d(x.as_tensor(), w.as_tensor()).unwrap(),
                conv_signal(d.as_tensor(), w.as_tensor()).unwrap(),
            ]
        });
        let vars: [&[&Var]; 3] = [&[&x], &[&x, &w], &[&d, &w]];
        for (i, (f, g)) in fast.iter().zip(&generic).enumerate() {
            assert!(max_diff(f, g) < 1e-12, "output {i}");
            let r = rand(f.dims(), 33 + i as u64);
            same_gradients(f, g, &r, vars[i], 1e-11);
        }
        // Inside the generic path the custom ops themselves refuse to run.
        let refused = crate::device::generic_path(|| x.as_tensor().apply_op1(Im2col { kh: 3, kw: 2 }));
        assert!(refused.unwrap_err().to_string().contains("device-generic path"));
    }
}
