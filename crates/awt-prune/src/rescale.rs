//! Rescaling a ticket's kept weights so that every unit's incoming weights keep the norm they had
//! in the dense initialisation.
//!
//! A mask at initialisation keeps the initial weights' scale: at density d a unit of a random
//! ticket sums about d of its inputs, so its pre-activation's standard deviation falls by about √d
//! per layer (at 2 % per layer, ~0.14 per layer and ~0.003 after LeNet-300-100's three), and the
//! logits are mostly bias. Variance-preserving initialisations for sparse nets (Evci et al. 2022,
//! "Gradient flow in sparse neural networks and how lottery tickets win", re-draw each unit at its
//! kept fan-in) address this by re-drawing the weights; this keeps the ticket's own weights — which
//! a score such as magnitude or SNIP chose — and scales each unit's kept incoming weights by one
//! factor, ‖w_unit‖ / ‖w_unit ⊙ m_unit‖. For a random mask the factor is ≈ 1/√d; a unit with no
//! kept incoming weight stays all zero.

use candle_core::{DType, Tensor};

use crate::alloc::PruneError;

/// The masked weight `weight ⊙ mask`, each output unit (row; out-channel of a convolution) scaled
/// so that its kept incoming weights have the Euclidean norm of its dense incoming weights.
/// `weight` and `mask` share a shape `(out, in, …)`; the result has `weight`'s dtype.
pub fn rescale_kept(weight: &Tensor, mask: &Tensor) -> Result<Tensor, PruneError> {
    let dims = weight.dims();
    if dims.len() < 2 {
        return Err(PruneError::Invalid(format!("rescaling needs an (out, in, …) weight, got shape {dims:?}")));
    }
    if mask.dims() != dims {
        return Err(PruneError::Invalid(format!(
            "the mask's shape {:?} differs from its weight's {dims:?}",
            mask.dims()
        )));
    }
    let out = dims[0];
    let w = weight.to_dtype(DType::F64)?.reshape((out, ()))?;
    let kept = w.mul(&mask.to_dtype(DType::F64)?.reshape((out, ()))?)?;
    let dense = w.sqr()?.sum(1)?.to_vec1::<f64>()?;
    let left = kept.sqr()?.sum(1)?.to_vec1::<f64>()?;
    // A row with nothing kept is zero whatever its factor; 1 keeps it finite.
    let factors: Vec<f64> = dense.iter().zip(&left).map(|(d, k)| if *k > 0.0 { (d / k).sqrt() } else { 1.0 }).collect();
    let f = Tensor::from_vec(factors, (out, 1), weight.device())?;
    Ok(kept.broadcast_mul(&f)?.reshape(dims)?.to_dtype(weight.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awt_base::Rng;
    use candle_core::Device;

    #[test]
    fn each_row_gets_back_its_dense_norm_and_empty_rows_stay_zero() {
        let w = Tensor::new(&[[3f32, 4.0, 0.0], [1.0, -2.0, 2.0], [0.5, 0.5, 0.5]], &Device::Cpu).unwrap();
        let m = Tensor::new(&[[1f32, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let r = rescale_kept(&w, &m).unwrap().to_vec2::<f32>().unwrap();
        // Row 0: ‖(3, 4, 0)‖ = 5 from the kept 3 → 5. Row 1: ‖(1, −2, 2)‖ = 3, kept ‖(−2, 2)‖ = √8.
        let k = 3.0 / 8f32.sqrt();
        let want = [[5.0, 0.0, 0.0], [0.0, -2.0 * k, 2.0 * k], [0.0, 0.0, 0.0]];
        for (row, want) in r.iter().zip(want) {
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{r:?}");
            }
        }
    }

    /// A random mask at density d scales by about 1/√d; a convolution is rescaled per out-channel.
    #[test]
    fn a_random_mask_is_scaled_by_about_one_over_the_root_of_its_density() {
        let mut rng = Rng::new(7);
        let (out, inp, k) = (16, 32, 9);
        let w: Vec<f32> = (0..out * inp * k).map(|_| rng.normal() as f32).collect();
        let m: Vec<f32> = (0..out * inp * k).map(|_| f32::from(u8::from(rng.uniform() < 0.1))).collect();
        let w = Tensor::from_vec(w, (out, inp, 3, 3), &Device::Cpu).unwrap();
        let m = Tensor::from_vec(m, (out, inp, 3, 3), &Device::Cpu).unwrap();
        let r = rescale_kept(&w, &m).unwrap();
        assert_eq!(r.dims(), w.dims());
        // Pruned weights stay zero.
        let off = r.mul(&m.affine(-1.0, 1.0).unwrap()).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(off.to_scalar::<f32>().unwrap(), 0.0);
        let norms = |t: &Tensor| t.reshape((out, ())).unwrap().sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
        let (nr, nw) = (norms(&r).to_vec1::<f32>().unwrap(), norms(&w).to_vec1::<f32>().unwrap());
        for (a, b) in nr.iter().zip(&nw) {
            assert!((a / b - 1.0).abs() < 1e-5, "row norms {nr:?} vs dense {nw:?}");
        }
        let ratio = r.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
            / w.mul(&m).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(
            (ratio / (1.0 / 0.1f32.sqrt()) - 1.0).abs() < 0.1,
            "mean factor {ratio}, expected ≈ {}",
            1.0 / 0.1f32.sqrt()
        );
    }

    #[test]
    fn mismatched_or_flat_shapes_are_refused_with_their_shapes() {
        let w = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let e = rescale_kept(&w, &Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap()).unwrap_err();
        assert!(e.to_string().contains("[3, 2]") && e.to_string().contains("[2, 3]"), "{e}");
        let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(rescale_kept(&b, &b).unwrap_err().to_string().contains("(out, in, …)"));
    }
}
