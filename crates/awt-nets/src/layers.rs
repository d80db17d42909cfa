//! Forward pass over a stage list, with pools whose gradients are correct. (The forward pass and the
//! pools live in `awt-base`, which the NTK crate also builds on; this module re-exports them and
//! holds their finite-difference tests and the tie convention of max-pooling.)

pub use awt_base::{avg_pool2, forward_stages, max_pool2};

#[cfg(test)]
mod tests {
    use super::*;
    use awt_base::Rng;
    use candle_core::{DType, Device, Result, Tensor, Var};

    /// Central finite differences of `sum(f(x) * r)` against candle's backward, in f64.
    fn check_pool_gradient(f: fn(&Tensor) -> Result<Tensor>, shape: (usize, usize, usize, usize)) {
        let dev = Device::Cpu;
        let mut rng = Rng::new(1);
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xs.clone(), shape, &dev).unwrap()).unwrap();
        let y = f(x.as_tensor()).unwrap();
        let rs: Vec<f64> = (0..y.elem_count()).map(|_| rng.normal()).collect();
        let r = Tensor::from_vec(rs, y.shape(), &dev).unwrap();
        let loss = |x: &Tensor| f(x).unwrap().mul(&r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-6;
        for i in 0..n {
            let mut p = xs.clone();
            p[i] += h;
            let mut m = xs.clone();
            m[i] -= h;
            let fd = (loss(&Tensor::from_vec(p, shape, &dev).unwrap())
                - loss(&Tensor::from_vec(m, shape, &dev).unwrap()))
                / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-7, "coordinate {i}: fd {fd} vs autograd {}", g[i]);
        }
    }

    #[test]
    fn max_pool_gradient_matches_finite_differences_even_and_odd_sizes() {
        check_pool_gradient(max_pool2, (2, 3, 6, 6));
        check_pool_gradient(max_pool2, (1, 2, 7, 5));
    }

    #[test]
    fn avg_pool_gradient_matches_finite_differences() {
        check_pool_gradient(avg_pool2, (2, 2, 6, 6));
        check_pool_gradient(avg_pool2, (1, 1, 5, 7));
    }

    #[test]
    fn max_pool_sends_a_tied_windows_gradient_to_its_first_maximum() {
        // PyTorch's and JAX's convention: one maximum (the first, row-major) per window receives
        // the gradient. Windows: all four tied; two tied in the bottom row; a unique maximum.
        let dev = Device::Cpu;
        #[rustfmt::skip]
        let x = Tensor::from_vec(vec![
            1.0f64, 1.0,  0.0, 0.0,  0.0, 5.0,
            1.0, 1.0,     2.0, 2.0,  1.0, 0.0,
        ], (1, 1, 2, 6), &dev).unwrap();
        #[rustfmt::skip]
        let want = vec![
            3.0, 0.0,  0.0, 0.0,  0.0, 7.0,
            0.0, 0.0,  5.0, 0.0,  0.0, 0.0,
        ];
        let d = Tensor::from_vec(vec![3.0f64, 5.0, 7.0], (1, 1, 1, 3), &dev).unwrap();
        let v = Var::from_tensor(&x).unwrap();
        let g = max_pool2(v.as_tensor()).unwrap().mul(&d).unwrap().sum_all().unwrap().backward().unwrap();
        let auto = g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(auto, want, "autograd through max_pool2");
        let explicit = awt_base::Stage::MaxPool2.backward(&x, &d).unwrap();
        assert_eq!(explicit.flatten_all().unwrap().to_vec1::<f64>().unwrap(), want, "Stage::backward");
        // Several signals per example (as the NTK pushes one per class) route the same way.
        let d2 = Tensor::cat(&[&d, &(&d * 2.0).unwrap()], 0).unwrap();
        let two = awt_base::Stage::MaxPool2.backward(&x, &d2).unwrap();
        let second = two.get(1).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(second, want.iter().map(|w| 2.0 * w).collect::<Vec<_>>());
    }

    #[test]
    fn max_pool_forward_equals_candles_forward() {
        let mut rng = Rng::new(2);
        let x = Tensor::from_vec(rng.uniform_vec_f32(2 * 3 * 8 * 8, -1.0, 1.0), (2, 3, 8, 8), &Device::Cpu).unwrap();
        let a = max_pool2(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = x.max_pool2d(2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        let _ = DType::F32;
    }
}
