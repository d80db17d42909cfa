//! An explicit backward pass to the input (a vector–Jacobian product through the stages), used by
//! attacks: it computes only what the input gradient needs, where autograd would also form every
//! weight gradient. Checked against autograd in tests.

use awt_base::Stage;
use candle_core::{Result, Tensor, WithDType};

/// Forward through `stages`, keeping each stage's input.
pub(crate) fn forward_keep(stages: &[Stage], x: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
    let mut inputs = Vec::with_capacity(stages.len());
    let mut h = x.clone();
    for s in stages {
        inputs.push(h.clone());
        h = s.forward(&h)?;
    }
    Ok((h, inputs))
}

/// `vᵀ ∂out/∂x` given the stage inputs of a forward pass and `v` shaped like the output.
pub(crate) fn backward_to_input(stages: &[Stage], inputs: &[Tensor], v: &Tensor) -> Result<Tensor> {
    let mut d = v.clone();
    for (s, inp) in stages.iter().zip(inputs).rev() {
        d = match s {
            Stage::Linear { .. } => {
                let w = s.effective_weight()?.expect("linear has a weight");
                d.matmul(&w)?
            }
            Stage::Relu => d.mul(&inp.gt(0.0)?.to_dtype(d.dtype())?)?,
            Stage::Flatten => d.reshape(inp.shape())?,
            Stage::Standardize { .. } => s.standardize_backward(&d)?,
            Stage::MaxPool2 => {
                let (b, c, h, w) = inp.dims4()?;
                let (h2, w2) = (h / 2, w / 2);
                let crop = inp.narrow(2, 0, h2 * 2)?.narrow(3, 0, w2 * 2)?.reshape((b, c, h2, 2, w2, 2))?;
                let m = crop.max_keepdim(5)?.max_keepdim(3)?;
                // Every position equal to its window's max receives the gradient, as candle's `max` backward does.
                let hit = crop.broadcast_eq(&m)?.to_dtype(d.dtype())?;
                let g = hit.broadcast_mul(&d.reshape((b, c, h2, 1, w2, 1))?)?.reshape((b, c, h2 * 2, w2 * 2))?;
                pad_to(&g, h, w)?
            }
            Stage::AvgPool2 => {
                let (b, c, h, w) = inp.dims4()?;
                let (h2, w2) = (h / 2, w / 2);
                let g = d.reshape((b, c, h2, 1, w2, 1))?.broadcast_as((b, c, h2, 2, w2, 2))?.affine(0.25, 0.0)?;
                pad_to(&g.reshape((b, c, h2 * 2, w2 * 2))?, h, w)?
            }
            Stage::Conv2d { .. } => {
                let w = s.effective_weight()?.expect("conv has a weight");
                conv_input_grad(&d, &w, inp.dims4()?)?
            }
        };
    }
    Ok(d)
}

/// Zero-pads `(b, c, h', w')` at the bottom/right to `(b, c, h, w)` (pools drop odd edges).
fn pad_to(g: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, gh, gw) = g.dims4()?;
    let g = if gh < h { g.pad_with_zeros(2, 0, h - gh)? } else { g.clone() };
    if gw < w { g.pad_with_zeros(3, 0, w - gw) } else { Ok(g) }
}

/// Input gradient of a stride-1, unpadded convolution: `col2im(δ_cols · W)`, where
/// `δ: (b, o, oh, ow)`, `w: (o, c, k, k)`, returning `(b, c, h, w)`.
fn conv_input_grad(d: &Tensor, w: &Tensor, (b, c, h, wd): (usize, usize, usize, usize)) -> Result<Tensor> {
    let (o, _, kh, kw) = w.dims4()?;
    let (oh, ow) = (h - kh + 1, wd - kw + 1);
    // (b·oh·ow, o) @ (o, c·kh·kw) = (b·oh·ow, c·kh·kw): each row is one output position's patch gradient.
    let dcols = d.permute((0, 2, 3, 1))?.reshape((b * oh * ow, o))?.matmul(&w.reshape((o, c * kh * kw))?)?;
    match dcols.dtype() {
        candle_core::DType::F32 => col2im::<f32>(&dcols, b, c, h, wd, kh, kw),
        candle_core::DType::F64 => col2im::<f64>(&dcols, b, c, h, wd, kh, kw),
        dt => Err(candle_core::Error::Msg(format!("conv input gradient: unsupported dtype {dt:?}"))),
    }
}

/// Scatter-adds patch gradients `(b·oh·ow, c·kh·kw)` back onto the image `(b, c, h, w)`.
#[allow(clippy::too_many_arguments)]
fn col2im<T: WithDType>(
    dcols: &Tensor,
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
) -> Result<Tensor> {
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let cols = dcols.flatten_all()?.to_vec1::<T>()?;
    let mut img = vec![T::zero(); b * c * h * w];
    let patch = c * kh * kw;
    for bi in 0..b {
        for y in 0..oh {
            for x in 0..ow {
                let row = &cols[((bi * oh + y) * ow + x) * patch..][..patch];
                for ci in 0..c {
                    for dy in 0..kh {
                        let src = &row[(ci * kh + dy) * kw..][..kw];
                        let dst = &mut img[((bi * c + ci) * h + y + dy) * w + x..][..kw];
                        for (a, s) in dst.iter_mut().zip(src) {
                            *a += *s;
                        }
                    }
                }
            }
        }
    }
    Tensor::from_vec(img, (b, c, h, w), dcols.device())
}
