//! The convolutions of the raw-buffer path ([`super`]), one image at a time: a convolution by a gemm
//! on the image's patches or over its kept weights ([`ImageConv`]), and a convolution, ReLU and
//! 2×2 max-pool run as one pass with its input gradient.

use awt_base::conv::{col2im_add as col2im, im2col_into as im2col};
use awt_base::kernels::{View, gemm_into};
use candle_core::WithDType;
use rayon::prelude::*;

use super::per_task;
use awt_base::sparse::{ConvDims, SparseConv};

/// [`Kept::ReluPool`]'s mark for a window whose maximum is not positive.
pub(super) const STOPPED: u8 = 4;

/// One image's convolution by either form: a gemm on the image's patches, or the kept weights.
pub(super) enum ImageConv<'a, T> {
    Gemm { w: &'a [T], dims: ConvDims },
    Sparse(&'a SparseConv<T>),
}

impl<T: WithDType> ImageConv<'_, T> {
    /// Scratch values per thread (the patch matrix of one image for the gemm, the wide output
    /// planes for the kept weights).
    pub(super) fn scratch(&self) -> usize {
        match self {
            ImageConv::Gemm { dims, .. } => dims.c * dims.kh * dims.kw * dims.positions(),
            ImageConv::Sparse(s) => s.scratch(),
        }
    }

    /// The convolution of `img` with bias `b` into `y` `(o, oh, ow)`, overwritten.
    pub(super) fn forward(&self, img: &[T], b: &[T], y: &mut [T], cols: &mut [T]) {
        match self {
            ImageConv::Gemm { w, dims } => {
                let ConvDims { o, c, h, w: iw, kh, kw } = *dims;
                let (ckk, l) = (c * kh * kw, dims.positions());
                im2col(img, cols, (1, c, h, iw), (kh, kw));
                for (oc, bv) in b.iter().enumerate() {
                    y[oc * l..(oc + 1) * l].fill(*bv);
                }
                gemm_into((o, l, ckk), (y, View::rows(0, l)), (w, View::rows(0, ckk)), (cols, View::rows(0, l)), true);
            }
            ImageConv::Sparse(s) => s.image_forward(img, b, y, cols),
        }
    }

    /// Adds the input gradient of one image, from the gradient `g` `(o, oh, ow)` at the output,
    /// into `dimg`.
    pub(super) fn backward(&self, g: &[T], dimg: &mut [T], dcols: &mut [T]) {
        match self {
            ImageConv::Gemm { w, dims } => {
                let ConvDims { o, c, h, w: iw, kh, kw } = *dims;
                let (ckk, l) = (c * kh * kw, dims.positions());
                // (ckk × o) · (o × L): the patch gradients of one image, summed back onto it.
                let wt = View::transposed(0, ckk);
                gemm_into((ckk, l, o), (dcols, View::rows(0, l)), (w, wt), (g, View::rows(0, l)), false);
                col2im(dcols, dimg, (1, c, h, iw), (kh, kw));
            }
            ImageConv::Sparse(s) => s.image_backward(g, dimg, dcols),
        }
    }
}

/// The first maximum of a 2×2 window `[a₀, a₁, a₂, a₃]` (row-major) and its position: the
/// maximum of each row's first maximum, the top row's on a tie — what a left-to-right scan keeping
/// the first strict maximum gives, but as selects the compiler need not branch on (a branch per
/// comparison mispredicted on about half of the windows of real activations).
#[inline(always)]
pub(super) fn window_max<T: WithDType>(a: [T; 4]) -> (T, u8) {
    let (m01, i01) = if a[1] > a[0] { (a[1], 1) } else { (a[0], 0) };
    let (m23, i23) = if a[3] > a[2] { (a[3], 3) } else { (a[2], 2) };
    if m23 > m01 { (m23, i23) } else { (m01, i01) }
}

/// A convolution, ReLU and 2×2 max-pool in one pass per image: the convolution's output (one gemm
/// into a per-thread buffer that stays in cache) is pooled at once, the ReLU applied to each
/// window's maximum (`max(relu(a)) = relu(max(a))`, and the first maximum is the same wherever it
/// is positive). Returns the pooled output `(n, o, oh/2, ow/2)` and per output its window position
/// or [`STOPPED`]. Saves writing, rectifying, copying and re-reading the full-size output.
pub(super) fn conv_relu_pool_fwd<T: WithDType>(
    x: &[T],
    conv: &ImageConv<'_, T>,
    b: &[T],
    n: usize,
    dims: ConvDims,
) -> (Vec<T>, Vec<u8>) {
    let (o, (oh, ow), l) = (dims.o, dims.out(), dims.positions());
    let (h2, w2) = (oh / 2, ow / 2);
    let pl = h2 * w2;
    let mut out = vec![T::zero(); n * o * pl];
    let mut arg = vec![0u8; n * o * pl];
    let t = per_task(n);
    out.par_chunks_mut((t * o * pl).max(1))
        .zip(arg.par_chunks_mut((t * o * pl).max(1)))
        .zip(x.par_chunks(t * dims.image()))
        .for_each(|((out, arg), src)| {
            let (mut cols, mut y) = (vec![T::zero(); conv.scratch()], vec![T::zero(); o * l]);
            for ((img, dst), am) in
                src.chunks(dims.image()).zip(out.chunks_mut((o * pl).max(1))).zip(arg.chunks_mut((o * pl).max(1)))
            {
                conv.forward(img, b, &mut y, &mut cols);
                for oc in 0..o {
                    let plane = &y[oc * l..][..l];
                    for r in 0..h2 {
                        for q in 0..w2 {
                            let at = |k: usize| plane[(2 * r + k / 2) * ow + 2 * q + k % 2];
                            let (best, bi) = window_max([at(0), at(1), at(2), at(3)]);
                            let e = oc * pl + r * w2 + q;
                            if best > T::zero() {
                                dst[e] = best;
                                am[e] = bi;
                            } else {
                                am[e] = STOPPED;
                            }
                        }
                    }
                }
            }
        });
    (out, arg)
}

/// The input gradient of [`conv_relu_pool_fwd`]: per image the pooled signal routed to each window's
/// maximum (where positive) in a per-thread buffer, then the convolution's input gradient from it.
pub(super) fn conv_relu_pool_bwd<T: WithDType>(
    d: &[T],
    arg: &[u8],
    conv: &ImageConv<'_, T>,
    n: usize,
    dims: ConvDims,
) -> Vec<T> {
    let (o, (oh, ow), l) = (dims.o, dims.out(), dims.positions());
    let (h2, w2) = (oh / 2, ow / 2);
    let pl = h2 * w2;
    let mut din = vec![T::zero(); n * dims.image()];
    let t = per_task(n);
    din.par_chunks_mut(t * dims.image())
        .zip(d.par_chunks((t * o * pl).max(1)))
        .zip(arg.par_chunks((t * o * pl).max(1)))
        .for_each(|((din, d), arg)| {
            let (mut dcols, mut g) = (vec![T::zero(); conv.scratch()], vec![T::zero(); o * l]);
            for ((img, di), am) in
                din.chunks_mut(dims.image()).zip(d.chunks((o * pl).max(1))).zip(arg.chunks((o * pl).max(1)))
            {
                g.fill(T::zero());
                for oc in 0..o {
                    for r in 0..h2 {
                        for q in 0..w2 {
                            let e = oc * pl + r * w2 + q;
                            let k = am[e];
                            if k != STOPPED {
                                let k = k as usize;
                                g[oc * l + (2 * r + k / 2) * ow + 2 * q + k % 2] = di[e];
                            }
                        }
                    }
                }
                conv.backward(&g, img, &mut dcols);
            }
        });
    din
}
