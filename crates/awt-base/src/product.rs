//! [`matmul`]: the project's matrix product of tensors, so that every product it makes on the CPU
//! follows one summation policy ([`crate::kernels::gemm_into`]: a small product in one chain per
//! output, the same bits on every CPU; a larger one by gemm). candle's own `matmul` hands small
//! products to gemm's SIMD-lane kernels, whose bits depend on the CPU's vector width
//! (docs/reproducing.md, "Across CPUs").
//!
//! CPU tensors of f32/f64 take [`MatMul`], which reads strided operands in place (a transpose costs
//! no copy); every other device, and the device-generic path ([`crate::device::generic_path`]),
//! takes candle's `matmul`. The product is differentiable: its backward pass is two more products
//! through [`matmul`]. The independent NTK reference (awt-ntk's `reference`) keeps candle's
//! `matmul` on purpose, and clippy's `disallowed-methods` (`clippy.toml`) flags any other use.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

use crate::kernels::{View, gemm_into};

/// `a·b` for 2-D `a: (m, k)`, `b: (k, n)`, or batched 3-D `a: (B, m, k)`, `b: (B, k, n)`.
/// Other ranks, and shapes that do not fit, go to candle's `matmul` (which names the mismatch).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if crate::device::cpu_kernels(a) && a.dtype() == b.dtype() && b.device().is_cpu() && fits(a, b) {
        return a.apply_op2(b, MatMul);
    }
    #[allow(clippy::disallowed_methods)] // the other devices' path
    a.matmul(b)
}

fn fits(a: &Tensor, b: &Tensor) -> bool {
    match (a.dims(), b.dims()) {
        ([_, k], [k2, _]) => k == k2,
        ([ba, _, k], [bb, k2, _]) => k == k2 && ba == bb,
        _ => false,
    }
}

/// The product of two CPU tensors ([`matmul`]), each read through its layout's strides.
#[derive(Clone, Copy, Debug)]
pub struct MatMul;

/// `(batch, m, n, k)` and each operand's batch stride and matrix view at batch 0.
type Plan = ((usize, usize, usize, usize), (usize, View), (usize, View));

fn plan(l1: &Layout, l2: &Layout) -> Result<Plan> {
    let (d1, d2) = (l1.dims(), l2.dims());
    let (s1, s2) = (l1.stride(), l2.stride());
    let view = |l: &Layout, s: &[usize], r: usize| View { offset: l.start_offset(), rs: s[r], cs: s[r + 1] };
    match (d1, d2) {
        ([m, k], [k2, n]) if k == k2 => Ok(((1, *m, *n, *k), (0, view(l1, s1, 0)), (0, view(l2, s2, 0)))),
        ([b, m, k], [b2, k2, n]) if k == k2 && b == b2 => {
            Ok(((*b, *m, *n, *k), (s1[0], view(l1, s1, 1)), (s2[0], view(l2, s2, 1))))
        }
        _ => candle_core::bail!("awt-matmul: shapes {d1:?} and {d2:?} do not multiply"),
    }
}

fn product<T: WithDType>(a: &[T], b: &[T], ((batch, m, n, k), (sa, av), (sb, bv)): Plan) -> Vec<T> {
    let mut out = vec![T::zero(); batch * m * n];
    for i in 0..batch {
        let a_i = View { offset: av.offset + i * sa, ..av };
        let b_i = View { offset: bv.offset + i * sb, ..bv };
        gemm_into((m, n, k), (&mut out, View::rows(i * m * n, n)), (a, a_i), (b, b_i), false);
    }
    out
}

impl candle_core::CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "awt-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::device::kernel_gate("awt-matmul")?;
        let p = plan(l1, l2)?;
        let ((batch, m, n, _), _, _) = p;
        let st = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(product(a, b, p)),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(product(a, b, p)),
            _ => candle_core::bail!("awt-matmul: only two f32 or two f64 operands"),
        };
        let shape = if l1.dims().len() == 2 { Shape::from((m, n)) } else { Shape::from((batch, m, n)) };
        Ok((st, shape))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // C = A·B: ∂⟨G, C⟩/∂A = G·Bᵀ, ∂⟨G, C⟩/∂B = Aᵀ·G (`t` swaps the last two axes).
        Ok((Some(matmul(grad, &b.t()?)?), Some(matmul(&a.t()?, grad)?)))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // candle's matmul is the reference here
mod tests {
    use super::*;
    use crate::testing::{check_fd, max_diff, rand};
    use candle_core::{DType, Device, Var};

    /// Plain, transposed and sliced operands, 2-D and batched, f64 and f32: candle's product to
    /// rounding, with no copy of a strided operand needed.
    #[test]
    fn equals_candles_product_on_strided_operands() {
        let cases: Vec<(Tensor, Tensor)> = vec![
            (rand(&[5, 3], 1), rand(&[3, 4], 2)),
            (rand(&[40, 70], 3), rand(&[70, 30], 4)),
            (rand(&[1, 9], 5), rand(&[9, 300], 6)),
            (rand(&[300, 9], 7), rand(&[9, 1], 8)),
            (rand(&[20, 17], 9), rand(&[33, 17], 10).t().unwrap()),
            (rand(&[17, 20], 11).t().unwrap(), rand(&[17, 33], 12)),
            (rand(&[30, 50], 13).narrow(1, 5, 40).unwrap(), rand(&[60, 12], 14).narrow(0, 10, 40).unwrap()),
            (rand(&[6, 8, 5], 15), rand(&[6, 5, 7], 16)),
            (rand(&[6, 5, 8], 17).transpose(1, 2).unwrap(), rand(&[5, 6, 7], 18).transpose(0, 1).unwrap()),
            (rand(&[3, 40, 64], 19), rand(&[3, 40, 64], 20).transpose(1, 2).unwrap()),
        ];
        for (a, b) in &cases {
            let (ours, theirs) = (matmul(a, b).unwrap(), a.matmul(b).unwrap());
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-12, "{:?} · {:?}", a.dims(), b.dims());
            let (a32, b32) = (a.to_dtype(DType::F32).unwrap(), b.to_dtype(DType::F32).unwrap());
            let (o32, t32) = (matmul(&a32, &b32).unwrap(), a32.matmul(&b32).unwrap());
            assert_eq!(o32.dtype(), DType::F32);
            assert!(max_diff(&o32, &t32) < 1e-4, "f32 {:?} · {:?}", a.dims(), b.dims());
        }
        // No depth: zeros.
        let z = matmul(&Tensor::zeros((4, 0), DType::F64, &Device::Cpu).unwrap(), &rand(&[0, 3], 21)).unwrap();
        assert_eq!((z.dims(), z.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()), (&[4, 3][..], 0.0));
    }

    /// The products candle hands to gemm's lane kernels (16 × 16 outputs, one column) are summed
    /// in one chain per output: terms big, 1, …, 1, −big give 0 in a chain (every 1 is lost against
    /// big in f32), and a split into lanes keeps some of them.
    #[test]
    fn small_products_are_one_chain_per_output() {
        let k = 34;
        let row = crate::testing::cancelling_row(k);
        for (m, n) in [(16, 16), (32, 1), (1, 32)] {
            let a = Tensor::from_vec(row.repeat(m), (m, k), &Device::Cpu).unwrap();
            let b = Tensor::ones((k, n), DType::F32, &Device::Cpu).unwrap();
            let c = matmul(&a, &b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(c.iter().all(|v| *v == 0.0), "{m}×{n}: {c:?}");
        }
    }

    /// The backward pass against candle's product's and against finite differences, 2-D and
    /// batched, through transposed operands.
    #[test]
    fn gradients_match_candles_and_finite_differences() {
        for (sa, sb) in [(vec![7, 5], vec![5, 9]), (vec![3, 4, 6], vec![3, 6, 2])] {
            let (va, vb) = (Var::from_tensor(&rand(&sa, 30)).unwrap(), Var::from_tensor(&rand(&sb, 31)).unwrap());
            let ours = matmul(va.as_tensor(), vb.as_tensor()).unwrap();
            let r = rand(ours.dims(), 32);
            let g = crate::testing::same_gradients(
                &ours,
                &va.as_tensor().matmul(vb.as_tensor()).unwrap(),
                &r,
                &[&va, &vb],
                1e-12,
            );
            let op = |xs: &[Tensor]| matmul(&xs[0], &xs[1]).unwrap();
            check_fd(&[va.as_tensor().clone(), vb.as_tensor().clone()], &g, 3, &r, &op);
        }
        // Through a transposed operand: the gradient lands on the untransposed variable.
        let va = Var::from_tensor(&rand(&[9, 4], 33)).unwrap();
        let b = rand(&[9, 6], 34);
        let ours = matmul(&va.as_tensor().t().unwrap(), &b).unwrap();
        let theirs = va.as_tensor().t().unwrap().matmul(&b).unwrap();
        crate::testing::same_gradients(&ours, &theirs, &rand(&[4, 6], 35), &[&va], 1e-12);
    }

    /// On the device-generic path the product is candle's (no custom op is reached); shapes that
    /// do not multiply get candle's error.
    #[test]
    fn the_generic_path_and_bad_shapes_take_candles_matmul() {
        let (a, b) = (rand(&[4, 3], 40), rand(&[3, 5], 41));
        let generic = crate::device::generic_path(|| matmul(&a, &b)).unwrap();
        assert!(max_diff(&generic, &a.matmul(&b).unwrap()) < 1e-12);
        assert!(matmul(&a, &rand(&[4, 5], 42)).is_err());
        assert!(matmul(&rand(&[2, 4, 3], 43), &rand(&[3, 3, 5], 44)).is_err());
    }
}
