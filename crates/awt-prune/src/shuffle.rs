//! The layer-wise shuffle of "Pruning neural networks at initialization: why are we missing the
//! mark?" (Frankle, Dziugaite, Roy, Carbin, ICLR 2021): each layer's mask permuted uniformly at
//! random, so the layer keeps its density and loses which weights it kept. A score whose tickets
//! train as well shuffled chose only the per-layer densities.

use awt_base::Rng;
use candle_core::Tensor;

use crate::alloc::{Masks, PruneError};

/// Each mask of `masks` permuted uniformly at random over its entries (its kept count unchanged),
/// the permutation from `Rng::new(seed).derive("shuffle").derive(name)`, so it depends neither on
/// the other layers nor on their order.
pub fn shuffle_within_layers(masks: &Masks, seed: u64) -> Result<Masks, PruneError> {
    let root = Rng::new(seed).derive("shuffle");
    masks
        .iter()
        .map(|(name, m)| {
            let mut v: Vec<f64> = m.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            root.derive(name).shuffle(&mut v);
            Ok((name.clone(), Tensor::from_vec(v, m.shape(), m.device())?.to_dtype(m.dtype())?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn mask(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn a_shuffle_keeps_each_layers_count_and_moves_its_weights() {
        let mut a = vec![0f32; 200];
        a[..20].iter_mut().for_each(|x| *x = 1.0);
        let masks = Masks::from([
            ("fc1.weight".to_string(), mask(&a, (10, 20))),
            ("fc2.weight".to_string(), mask(&[1.0; 6], (2, 3))),
        ]);
        let s = shuffle_within_layers(&masks, 7).unwrap();
        let v: Vec<f32> = s["fc1.weight"].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v.iter().filter(|x| **x == 1.0).count(), 20);
        assert!(v.iter().all(|x| *x == 0.0 || *x == 1.0));
        assert_ne!(v, a, "the kept weights moved");
        assert_eq!(s["fc1.weight"].dims(), &[10, 20]);
        assert_eq!(s["fc1.weight"].dtype(), DType::F32);
        // A dense layer stays dense; the same seed gives the same masks, another seed others, and
        // a layer's permutation does not depend on the other layers.
        let d: Vec<f32> = s["fc2.weight"].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(d, vec![1.0; 6]);
        let again = shuffle_within_layers(&masks, 7).unwrap();
        assert_eq!(again["fc1.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap(), v);
        let other = shuffle_within_layers(&masks, 8).unwrap();
        assert_ne!(other["fc1.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap(), v);
        let alone = Masks::from([("fc1.weight".to_string(), mask(&a, (10, 20)))]);
        let one = shuffle_within_layers(&alone, 7).unwrap();
        assert_eq!(one["fc1.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap(), v);
    }
}
