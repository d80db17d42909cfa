//! What a search step holds in memory, estimated before the search allocates it, so that a batch
//! too large for the machine is refused up front (naming `--batch`) instead of growing until the
//! system stops it.

use awt_nets::{Arch, LayerDef};

use crate::config::{InputMix, SearchConfig};

/// Bytes one search step of `arch` under `cfg` holds at its peak, with `elem` bytes per number:
/// for the teacher's and the student's kernel, on each half of the batch, every stage's backward
/// signal for every class and the convolutions' dense per-example weight gradients (with a quarter
/// more for temporaries), the kernels, the PGD iterates, and the parameters with their gradients
/// and Adam moments. Calibrated on measured peak resident memory (LeNet-5, AWT, density 0.05:
/// 452 MB at batch 64 and 1.35 GB at batch 256, dataset included, against estimates of 0.43 and
/// 1.6 GB): an upper estimate, since the student's sparse paths hold less.
pub fn memory_estimate(arch: &Arch, cfg: &SearchConfig, elem: usize) -> f64 {
    let inputs = match cfg.inputs {
        InputMix::Adversarial => cfg.batch,
        InputMix::CleanAndAdversarial => 2 * cfg.batch,
    } as f64;
    let rows = (inputs / 2.0).ceil() * arch.classes() as f64; // signals per half
    let activations: f64 =
        arch.input_shape().iter().product::<usize>() as f64 + arch.activation_sizes().iter().sum::<usize>() as f64;
    let conv_weights: f64 = arch
        .layers()
        .iter()
        .map(|l| match l {
            LayerDef::Conv { inp, out, k, .. } => (inp * out * k * k) as f64,
            _ => 0.0,
        })
        .sum();
    let params = arch.param_count().unwrap_or(u64::MAX) as f64;
    let per_side = rows * 1.25 * (activations + conv_weights);
    let kernels = 4.0 * rows * rows;
    let pgd = 3.0 * inputs * activations;
    elem as f64 * (4.0 * per_side + kernels + pgd + 6.0 * params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Method;

    #[test]
    fn the_estimate_grows_with_the_batch_and_the_net() {
        let cfg = |batch| SearchConfig {
            batch,
            ..SearchConfig::defaults(Method::Awt, awt_runs::Density::new(0.05).unwrap())
        };
        let mlp = memory_estimate(&Arch::Lenet300100, &cfg(64), 4);
        let lenet5 = memory_estimate(&Arch::Lenet5Caffe, &cfg(64), 4);
        // LeNet-5 at batch 64 peaked at 452 MB of resident memory (dataset included), at 256 at 1.35 GB.
        assert!(lenet5 > 0.3e9 && lenet5 < 0.6e9, "{lenet5}");
        let b256 = memory_estimate(&Arch::Lenet5Caffe, &cfg(256), 4);
        assert!(b256 > 1.35e9 && b256 < 2.0e9, "{b256}");
        assert!(mlp < lenet5 / 5.0);
        // Signals grow linearly with the batch, kernels quadratically.
        let big = memory_estimate(&Arch::Lenet5Caffe, &cfg(640), 4);
        assert!(big > 10.0 * lenet5);
        let both = SearchConfig { inputs: InputMix::CleanAndAdversarial, ..cfg(64) };
        assert!(memory_estimate(&Arch::Lenet5Caffe, &both, 4) > 1.9 * lenet5);
    }
}
