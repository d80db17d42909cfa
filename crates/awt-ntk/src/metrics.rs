//! Kernel comparisons and spectra.

use candle_core::{DType, Tensor};

use crate::error::NtkError;

fn frob(t: &Tensor) -> Result<f64, NtkError> {
    Ok(t.to_dtype(DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?)
}

/// ‖A − B‖_F / ‖B‖_F.
pub fn relative_distance(a: &Tensor, b: &Tensor) -> Result<f64, NtkError> {
    Ok(frob(&(a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?)? / frob(b)?.max(f64::MIN_POSITIVE))
}

/// Kernel alignment ⟨A, B⟩_F / (‖A‖_F ‖B‖_F) (Cristianini et al. 2002); 1 for proportional kernels.
pub fn alignment(a: &Tensor, b: &Tensor) -> Result<f64, NtkError> {
    let (a, b) = (a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?);
    let dot = a.mul(&b)?.sum_all()?.to_scalar::<f64>()?;
    Ok(dot / (frob(&a)? * frob(&b)?).max(f64::MIN_POSITIVE))
}

/// Trace of a square kernel.
pub fn trace(a: &Tensor) -> Result<f64, NtkError> {
    let (r, c) = a.dims2()?;
    if r != c {
        return Err(NtkError::Invalid(format!("trace of a {r}×{c} kernel: not square")));
    }
    let eye = Tensor::eye(r, DType::F64, a.device())?;
    Ok(a.to_dtype(DType::F64)?.mul(&eye)?.sum_all()?.to_scalar::<f64>()?)
}

/// Eigenvalues of a symmetric kernel, descending. The kernel is symmetrised first; an asymmetry
/// above 1e-6 relative is an error (it is not an NTK of one batch with itself).
pub fn spectrum(a: &Tensor) -> Result<Vec<f64>, NtkError> {
    let (r, c) = a.dims2()?;
    if r != c {
        return Err(NtkError::Invalid(format!("spectrum of a {r}×{c} kernel: not square")));
    }
    let v = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let m = nalgebra::DMatrix::from_row_slice(r, r, &v);
    let asym = (&m - m.transpose()).norm() / m.norm().max(f64::MIN_POSITIVE);
    if asym > 1e-6 {
        return Err(NtkError::Invalid(format!("kernel is not symmetric (relative asymmetry {asym:.2e})")));
    }
    let sym = (&m + m.transpose()) * 0.5;
    let mut ev: Vec<f64> = nalgebra::SymmetricEigen::new(sym).eigenvalues.iter().copied().collect();
    ev.sort_by(|a, b| b.total_cmp(a));
    Ok(ev)
}

/// λ_max / λ_min of a symmetric PSD kernel (∞ when λ_min ≤ 0 numerically).
pub fn condition_number(eigenvalues: &[f64]) -> f64 {
    match (eigenvalues.first(), eigenvalues.last()) {
        (Some(&hi), Some(&lo)) if lo > 0.0 => hi / lo,
        _ => f64::INFINITY,
    }
}
