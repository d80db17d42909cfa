//! Kernel dynamics over training: distance of the current kernel on fixed probe inputs to the
//! initial kernel and to a reference network's kernel (the "dynamics preserved" evidence).

use awt_base::Stage;
use candle_core::Tensor;

use crate::error::NtkError;
use crate::metrics::{alignment, relative_distance};
use crate::{Kind, structured_blocked};

/// One measurement on one probe set.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelRecord {
    /// Probe set label (e.g. `clean`, `adversarial`).
    pub probe: String,
    /// ‖Θ_t − Θ_0‖ / ‖Θ_0‖.
    pub to_initial: f64,
    /// ‖Θ_t − Θ_ref‖ / ‖Θ_ref‖, when a reference kernel was given.
    pub to_reference: Option<f64>,
    /// Alignment with the reference kernel, when given.
    pub alignment_reference: Option<f64>,
}

/// Remembers the initial kernels on fixed probe inputs and compares later kernels to them.
/// The caller supplies the inputs (clean or adversarial), so this crate needs no attack.
pub struct Tracker {
    probes: Vec<(String, Tensor, Tensor, Option<Tensor>)>,
    block: usize,
}

impl Tracker {
    /// Records the initial kernels of `stages` on each `(label, inputs)` probe set, and the
    /// reference network's kernels when `reference` is given.
    pub fn new(
        stages: &[Stage],
        reference: Option<&[Stage]>,
        probes: &[(String, Tensor)],
        block: usize,
    ) -> Result<Tracker, NtkError> {
        let mut v = Vec::new();
        for (label, x) in probes {
            let k0 = structured_blocked(stages, x, x, Kind::Full, block)?;
            let kr = reference.map(|r| structured_blocked(r, x, x, Kind::Full, block)).transpose()?;
            v.push((label.clone(), x.clone(), k0, kr));
        }
        Ok(Tracker { probes: v, block })
    }

    /// Distances of the current kernels of `stages`.
    pub fn measure(&self, stages: &[Stage]) -> Result<Vec<KernelRecord>, NtkError> {
        self.probes
            .iter()
            .map(|(label, x, k0, kr)| {
                let k = structured_blocked(stages, x, x, Kind::Full, self.block)?;
                Ok(KernelRecord {
                    probe: label.clone(),
                    to_initial: relative_distance(&k, k0)?,
                    to_reference: kr.as_ref().map(|r| relative_distance(&k, r)).transpose()?,
                    alignment_reference: kr.as_ref().map(|r| alignment(&k, r)).transpose()?,
                })
            })
            .collect()
    }
}
