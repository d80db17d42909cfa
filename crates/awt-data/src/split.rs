//! One split of a dataset in memory, and deterministic batching.

use awt_base::Rng;
use candle_core::{Device, Tensor};

use crate::error::DataError;

/// Images as bytes (`n × c × h × w`, row-major) and labels in 0..10.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Pixel bytes, image after image, each CHW.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// `[c, h, w]`.
    pub shape: [usize; 3],
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image.
    pub fn image_size(&self) -> usize {
        self.shape.iter().product()
    }

    /// The examples `offset..offset+n` as a new split.
    pub fn subset(&self, offset: usize, n: usize) -> Result<Split, DataError> {
        if offset.checked_add(n).is_none_or(|e| e > self.len()) {
            return Err(DataError::Invalid(format!(
                "examples {offset}..{} requested, the split has {}",
                offset.saturating_add(n),
                self.len()
            )));
        }
        let s = self.image_size();
        Ok(Split {
            images: self.images[offset * s..(offset + n) * s].to_vec(),
            labels: self.labels[offset..offset + n].to_vec(),
            shape: self.shape,
        })
    }

    /// Images `idx` as an f32 tensor `(len, c, h, w)` with values `byte / 255` in [0, 1].
    pub fn images_tensor(&self, idx: &[usize], device: &Device) -> Result<Tensor, DataError> {
        let s = self.image_size();
        let mut v = Vec::with_capacity(idx.len() * s);
        for &i in idx {
            if i >= self.len() {
                return Err(DataError::Invalid(format!("example {i} requested, the split has {}", self.len())));
            }
            v.extend(self.images[i * s..(i + 1) * s].iter().map(|&b| f32::from(b) / 255.0));
        }
        let [c, h, w] = self.shape;
        Ok(Tensor::from_vec(v, (idx.len(), c, h, w), device)?)
    }

    /// Labels `idx` as a u32 tensor `(len,)`.
    pub fn labels_tensor(&self, idx: &[usize], device: &Device) -> Result<Tensor, DataError> {
        let v: Vec<u32> = idx.iter().map(|&i| u32::from(self.labels[i])).collect();
        Ok(Tensor::from_vec(v, idx.len(), device)?)
    }

    /// `(images, labels)` for the examples `idx`.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor), DataError> {
        Ok((self.images_tensor(idx, device)?, self.labels_tensor(idx, device)?))
    }

    /// Per-channel mean and (population) standard deviation of the pixel values `byte / 255`, over
    /// every image of the split: the statistics a standardising input layer uses (NTT's recipe).
    pub fn channel_stats(&self) -> Result<(Vec<f64>, Vec<f64>), DataError> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        if self.is_empty() || plane == 0 {
            return Err(DataError::Invalid("channel statistics of an empty split".into()));
        }
        let (mut sum, mut sq) = (vec![0f64; c], vec![0f64; c]);
        for img in self.images.chunks_exact(c * plane) {
            for (ch, px) in img.chunks_exact(plane).enumerate() {
                for &b in px {
                    let v = f64::from(b) / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
        }
        let count = (self.len() * plane) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| (q / count - m * m).max(0.0).sqrt()).collect();
        Ok((mean, std))
    }

    /// Count of each label 0..9.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut c = [0; 10];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

/// The order of `n` examples in `epoch` for run seed `seed`: a Fisher–Yates shuffle from the
/// stream `Rng::new(seed).derive("shuffle").fork(epoch)`, so each epoch's order is fixed by the
/// seed alone (a resumed run sees the same order) and differs between epochs.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    Rng::new(seed).derive("shuffle").fork(epoch).shuffle(&mut idx);
    idx
}

/// Splits an order into batches of `batch_size` (the last may be smaller).
pub fn batches(order: &[usize], batch_size: usize) -> Vec<&[usize]> {
    order.chunks(batch_size.max(1)).collect()
}

#[cfg(test)]
fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>, DataError> {
    Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0);
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(batches(&a, 32).iter().map(|b| b.len()).collect::<Vec<_>>(), vec![32, 32, 32, 4]);
    }

    #[test]
    fn tensors_are_nchw_in_unit_range_and_subset_checks_bounds() {
        let s = Split {
            images: (0..2 * 3 * 2 * 2).map(|i| (i * 10) as u8).collect(),
            labels: vec![3, 7],
            shape: [3, 2, 2],
        };
        let (x, y) = s.batch(&[1, 0], &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 3, 2, 2]);
        let v = to_f32_vec(&x).unwrap();
        assert_eq!(v[0], 120.0 / 255.0);
        assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![7, 3]);
        assert!(s.subset(1, 2).is_err());
        assert_eq!(s.subset(1, 1).unwrap().labels, vec![7]);
        assert!(s.images_tensor(&[2], &Device::Cpu).is_err());
    }
}
