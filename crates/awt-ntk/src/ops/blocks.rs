//! Kernel-block ops of the NTK: scaling each k×k block of a full kernel by one number, adding a
//! scaled block kernel to a running sum, and adding a block-diagonal one, each in one pass and
//! differentiable (hand-written backward, checked against the broadcast formulation in the tests).

use awt_base::conv::cpu_slice;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `out[(i,c),(j,c')] = dd[(i,c),(j,c')] · s[i,j]`: scales each k×k block of a full kernel by one
/// number. The same product by candle's `broadcast_mul` walks a strided index per element; this op
/// is a plain loop. Differentiable in both arguments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScaleBlocks {
    /// Classes per block.
    pub k: usize,
}

fn scale_blocks_t<T: WithDType>(dd: &[T], s: &[T], n1: usize, n2: usize, k: usize) -> Vec<T> {
    let mut out = dd.to_vec();
    for i in 0..n1 {
        for c in 0..k {
            let row = &mut out[(i * k + c) * n2 * k..][..n2 * k];
            for j in 0..n2 {
                let f = s[i * n2 + j];
                for v in &mut row[j * k..(j + 1) * k] {
                    *v *= f;
                }
            }
        }
    }
    out
}

impl candle_core::CustomOp2 for ScaleBlocks {
    fn name(&self) -> &'static str {
        "awt-scale-blocks"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (r, c) = l1.shape().dims2()?;
        let (n1, n2) = l2.shape().dims2()?;
        if r != n1 * self.k || c != n2 * self.k {
            candle_core::bail!("scale-blocks: kernel {r}×{c} does not match scale {n1}×{n2} with k = {}", self.k);
        }
        let st = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(scale_blocks_t(cpu_slice::<f32>(s1, l1)?, cpu_slice::<f32>(s2, l2)?, n1, n2, self.k))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(scale_blocks_t(cpu_slice::<f64>(s1, l1)?, cpu_slice::<f64>(s2, l2)?, n1, n2, self.k))
            }
            _ => candle_core::bail!("scale-blocks: only f32 or f64, both the same"),
        };
        Ok((st, l1.shape().clone()))
    }

    fn bwd(&self, dd: &Tensor, s: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n1, n2) = s.dims2()?;
        let k = self.k;
        let g = grad.contiguous()?;
        let gdd = g.apply_op2_no_bwd(s, self)?;
        let gs = g.mul(dd)?.reshape((n1, k, n2, k))?.sum(3)?.sum(1)?;
        Ok((Some(gdd), Some(gs)))
    }
}

/// Kernel entries at least this many are filled by candle's threads, a block row `i` per task.
const PARALLEL_ENTRIES: usize = 1 << 16;

/// A kernel of `n1·k` rows of `w` entries, zeros, then filled by `block_row(i, rows (i, ·))`, over
/// the threads where it is large enough.
fn by_block_rows<T: WithDType>(n1: usize, k: usize, w: usize, block_row: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); n1 * k * w];
    if out.len() >= PARALLEL_ENTRIES && awt_base::threads() > 1 {
        out.par_chunks_mut((k * w).max(1)).enumerate().for_each(|(i, o)| block_row(i, o));
    } else {
        out.chunks_mut((k * w).max(1)).enumerate().for_each(|(i, o)| block_row(i, o));
    }
    out
}

/// `acc + dd ⊙ (s ⊗ 1ₖₖ)`, `(n1·k, n2·k)`: each entry `a + d·f`, one rounding, as a running sum adds
/// it; the scales of a block row are spread over its columns first, so that each row is one
/// vectorisable loop.
fn scale_add_t<T: WithDType>(acc: &[T], dd: &[T], s: &[T], n1: usize, n2: usize, k: usize) -> Vec<T> {
    let w = n2 * k;
    by_block_rows(n1, k, w, |i, out_i| {
        let s_i = &s[i * n2..(i + 1) * n2];
        // s[i, j] for every column (j, c') of the block row.
        let spread: Vec<T> = (0..w).map(|col| s_i[col / k]).collect();
        for (c, o) in out_i.chunks_exact_mut(w).enumerate() {
            let r = (i * k + c) * w;
            for (((o, a), d), f) in o.iter_mut().zip(&acc[r..r + w]).zip(&dd[r..r + w]).zip(&spread) {
                *o = *a + *d * *f;
            }
        }
    })
}

/// `acc + s ⊗ Iₖ` (`acc` absent: zeros), `(n1·k, n2·k)`.
fn diag_add_t<T: WithDType>(acc: Option<&[T]>, s: &[T], n1: usize, n2: usize, k: usize) -> Vec<T> {
    let w = n2 * k;
    by_block_rows(n1, k, w, |i, out_i| {
        for (c, o) in out_i.chunks_exact_mut(w).enumerate() {
            if let Some(acc) = acc {
                o.copy_from_slice(&acc[(i * k + c) * w..][..w]);
            }
            for (j, f) in s[i * n2..(i + 1) * n2].iter().enumerate() {
                o[j * k + c] += *f;
            }
        }
    })
}

/// `acc + dd ⊙ (s ⊗ 1ₖₖ)` in one pass: a dense linear layer's kernel term added to the running
/// kernel without materialising it. Differentiable in all three arguments.
#[derive(Clone, Copy, Debug)]
pub struct ScaleBlocksAdd {
    /// Classes per block.
    pub k: usize,
}

impl candle_core::CustomOp3 for ScaleBlocksAdd {
    fn name(&self) -> &'static str {
        "awt-scale-blocks-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n1, n2) = l3.shape().dims2()?;
        if l1.shape() != l2.shape() || l1.shape().dims2()? != (n1 * self.k, n2 * self.k) {
            candle_core::bail!(
                "scale-blocks-add: shapes {:?} {:?} {:?} do not fit k = {}",
                l1.shape(),
                l2.shape(),
                l3.shape(),
                self.k
            );
        }
        let st = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(scale_add_t(
                cpu_slice::<f32>(s1, l1)?,
                cpu_slice::<f32>(s2, l2)?,
                cpu_slice::<f32>(s3, l3)?,
                n1,
                n2,
                self.k,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(scale_add_t(
                cpu_slice::<f64>(s1, l1)?,
                cpu_slice::<f64>(s2, l2)?,
                cpu_slice::<f64>(s3, l3)?,
                n1,
                n2,
                self.k,
            )),
            _ => candle_core::bail!("scale-blocks-add: only f32 or f64, all the same"),
        };
        Ok((st, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _acc: &Tensor,
        dd: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n1, n2) = s.dims2()?;
        let k = self.k;
        let g = grad.contiguous()?;
        let gdd = g.apply_op2_no_bwd(s, &ScaleBlocks { k })?;
        let gs = g.mul(dd)?.reshape((n1, k, n2, k))?.sum(3)?.sum(1)?;
        Ok((Some(g), Some(gdd), Some(gs)))
    }
}

/// `acc + s ⊗ Iₖ`: the kernel term of an unmasked output layer, whose backward signals are the
/// identity (Θ[(i,c),(j,c')] = [c = c'] (a_i·a_j + 1)), without a matmul. Differentiable.
#[derive(Clone, Copy, Debug)]
pub struct AddBlockDiag {
    /// Classes per block.
    pub k: usize,
}

impl candle_core::CustomOp2 for AddBlockDiag {
    fn name(&self) -> &'static str {
        "awt-add-block-diag"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n1, n2) = l2.shape().dims2()?;
        if l1.shape().dims2()? != (n1 * self.k, n2 * self.k) {
            candle_core::bail!("add-block-diag: shapes {:?} {:?} do not fit k = {}", l1.shape(), l2.shape(), self.k);
        }
        let st = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(diag_add_t(Some(cpu_slice::<f32>(s1, l1)?), cpu_slice::<f32>(s2, l2)?, n1, n2, self.k))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(diag_add_t(Some(cpu_slice::<f64>(s1, l1)?), cpu_slice::<f64>(s2, l2)?, n1, n2, self.k))
            }
            _ => candle_core::bail!("add-block-diag: only f32 or f64, both the same"),
        };
        Ok((st, l1.shape().clone()))
    }

    fn bwd(&self, _acc: &Tensor, s: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(diag_block_sums(grad, s.dims2()?, self.k)?)))
    }
}

/// `s ⊗ Iₖ`: [`AddBlockDiag`] onto zeros, without them (the first term of a kernel whose last
/// layer is an unmasked output layer). Differentiable.
#[derive(Clone, Copy, Debug)]
pub struct BlockDiag {
    /// Classes per block.
    pub k: usize,
}

impl candle_core::CustomOp1 for BlockDiag {
    fn name(&self) -> &'static str {
        "awt-block-diag"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n1, n2) = l.shape().dims2()?;
        let st = match s {
            CpuStorage::F32(_) => CpuStorage::F32(diag_add_t(None, cpu_slice::<f32>(s, l)?, n1, n2, self.k)),
            CpuStorage::F64(_) => CpuStorage::F64(diag_add_t(None, cpu_slice::<f64>(s, l)?, n1, n2, self.k)),
            _ => candle_core::bail!("block-diag: only f32 or f64"),
        };
        Ok((st, Shape::from((n1 * self.k, n2 * self.k))))
    }

    fn bwd(&self, s: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(diag_block_sums(grad, s.dims2()?, self.k)?))
    }
}

/// `Σ_c grad[(i,c),(j,c)]`: the gradient of `s` through `s ⊗ Iₖ`.
fn diag_block_sums(grad: &Tensor, (n1, n2): (usize, usize), k: usize) -> Result<Tensor> {
    let eye = Tensor::eye(k, grad.dtype(), grad.device())?.reshape((1, k, 1, k))?;
    grad.reshape((n1, k, n2, k))?.broadcast_mul(&eye)?.sum(3)?.sum(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awt_base::testing::{max_diff, rand, same_gradients};
    use candle_core::{DType, Device, Var};

    #[test]
    fn scale_blocks_equals_broadcast_mul_with_gradients() {
        let dd = Var::from_tensor(&rand(&[6, 4], 7)).unwrap();
        let s = Var::from_tensor(&rand(&[3, 2], 8)).unwrap();
        let r = rand(&[6, 4], 9);
        let fast = dd.as_tensor().apply_op2(s.as_tensor(), ScaleBlocks { k: 2 }).unwrap();
        let slow = dd
            .as_tensor()
            .reshape((3, 2, 2, 2))
            .unwrap()
            .broadcast_mul(&s.as_tensor().reshape((3, 1, 2, 1)).unwrap())
            .unwrap()
            .reshape((6, 4))
            .unwrap();
        assert!(max_diff(&fast, &slow) < 1e-15);
        same_gradients(&fast, &slow, &r, &[&dd, &s], 1e-14);
    }

    #[test]
    fn fused_kernel_accumulation_ops_equal_their_definitions_with_gradients() {
        let acc = Var::from_tensor(&rand(&[6, 4], 10)).unwrap();
        let dd = Var::from_tensor(&rand(&[6, 4], 11)).unwrap();
        let s = Var::from_tensor(&rand(&[3, 2], 12)).unwrap();
        let r = rand(&[6, 4], 13);
        let slow_scale =
            (acc.as_tensor() + dd.as_tensor().apply_op2(s.as_tensor(), ScaleBlocks { k: 2 }).unwrap()).unwrap();
        let fast_scale = acc.as_tensor().apply_op3(dd.as_tensor(), s.as_tensor(), ScaleBlocksAdd { k: 2 }).unwrap();
        let eye = Tensor::eye(2, DType::F64, &Device::Cpu).unwrap().reshape((1, 2, 1, 2)).unwrap();
        let kron = s.as_tensor().reshape((3, 1, 2, 1)).unwrap().broadcast_mul(&eye).unwrap().reshape((6, 4)).unwrap();
        let slow_diag = (acc.as_tensor() + kron).unwrap();
        let fast_diag = acc.as_tensor().apply_op2(s.as_tensor(), AddBlockDiag { k: 2 }).unwrap();
        for (fast, slow) in [(fast_scale, slow_scale), (fast_diag, slow_diag)] {
            assert!(max_diff(&fast, &slow) < 1e-14);
            let gf = fast.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = slow.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&acc, &dd, &s] {
                match (gf.get(v.as_tensor()), gs.get(v.as_tensor())) {
                    (Some(a), Some(b)) => assert!(max_diff(a, b) < 1e-13),
                    (None, None) => {}
                    _ => panic!("gradient present on one side only"),
                }
            }
        }
    }
}
