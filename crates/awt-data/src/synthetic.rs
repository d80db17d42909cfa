//! A synthetic, learnable dataset for unit tests: each class has a random prototype image and
//! examples are the prototype plus uniform noise, quantised to bytes like real images.

use awt_base::Rng;

use crate::split::Split;

/// `n` examples of shape `[c, h, w]` over `classes ≤ 10` classes (labels cycle through them),
/// with noise amplitude `noise` in pixel units (0..1), from `seed`.
pub fn prototypes(n: usize, shape: [usize; 3], classes: usize, noise: f64, seed: u64) -> Split {
    assert!((1..=10).contains(&classes), "1..=10 classes");
    let size: usize = shape.iter().product();
    let mut rng = Rng::new(seed).derive("synthetic");
    let protos: Vec<Vec<f64>> = (0..classes).map(|_| (0..size).map(|_| rng.uniform()).collect()).collect();
    let mut images = Vec::with_capacity(n * size);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        labels.push(c as u8);
        for &p in &protos[c] {
            let v = (p + noise * rng.uniform_range(-1.0, 1.0)).clamp(0.0, 1.0);
            images.push((v * 255.0).round() as u8);
        }
    }
    Split { images, labels, shape }
}
