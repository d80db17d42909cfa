//! What a mask cuts off: units left without any kept incoming weight (an output unit that only
//! sees its bias, a class the network can never be steered toward) or without any kept outgoing
//! weight (an input the layer ignores). At 3 % per layer LeNet-300-100's last layer keeps 30 of
//! 1,000 weights, and a random mask leaves some class with none about 4 % of the time per class.

use candle_core::{DType, Tensor};

use crate::alloc::PruneError;

/// The units one layer's mask cuts off, by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutOff {
    /// Output units (rows; out-channels of a convolution) with no kept incoming weight.
    pub outputs_without_input: Vec<usize>,
    /// Input units (columns; in-channels) with no kept outgoing weight.
    pub inputs_without_output: Vec<usize>,
}

/// [`CutOff`] of a mask shaped like its weight, `(out, in)` or `(out, in, kh, kw)`.
pub fn cut_off(mask: &Tensor) -> Result<CutOff, PruneError> {
    let dims = mask.dims();
    if dims.len() < 2 {
        return Err(PruneError::Invalid(format!("a mask needs (out, in, …) dimensions, got {dims:?}")));
    }
    let (out, inp) = (dims[0], dims[1]);
    let m = mask.to_dtype(DType::F64)?.abs()?.reshape((out, inp, ()))?;
    let per_out = m.sum(2)?.sum(1)?.to_vec1::<f64>()?;
    let per_in = m.sum(2)?.sum(0)?.to_vec1::<f64>()?;
    let zeros = |v: Vec<f64>| v.iter().enumerate().filter(|(_, c)| **c == 0.0).map(|(i, _)| i).collect();
    Ok(CutOff { outputs_without_input: zeros(per_out), inputs_without_output: zeros(per_in) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rows_and_columns_without_a_kept_weight_are_found() {
        let m = Tensor::new(&[[0f32, 0., 0.], [1., 0., 0.], [0., 0., 1.]], &Device::Cpu).unwrap();
        let c = cut_off(&m).unwrap();
        assert_eq!(c.outputs_without_input, vec![0]);
        assert_eq!(c.inputs_without_output, vec![1]);
        // A convolution's (out, in, kh, kw): out-channel 1 and in-channel 0 are empty.
        let mut v = vec![0f32; 2 * 2 * 3 * 3];
        v[9 + 4] = 1.0; // out 0, in 1, centre
        let c = cut_off(&Tensor::from_vec(v, (2, 2, 3, 3), &Device::Cpu).unwrap()).unwrap();
        assert_eq!(c, CutOff { outputs_without_input: vec![1], inputs_without_output: vec![0] });
        assert!(cut_off(&Tensor::new(&[1f32, 0.], &Device::Cpu).unwrap()).is_err());
    }
}
