//! AutoAttack's sequences (Croce & Hein, ICML 2020), each attack on the points the previous ones
//! left standing: the standard version (APGD-CE, APGD-T, FAB-T, Square; what RobustBench reports)
//! and a fast one (APGD-CE, APGD-T) for quick checks. Run them with [`crate::evaluate_batch`], which
//! counts robust accuracy after each attack and flags points only Square breaks.

use crate::apgd::Apgd;
use crate::apgd_t::ApgdTargeted;
use crate::core::Attack;
use crate::fab::FabTargeted;
use crate::loss::LossKind;
use crate::pgd::Norm;
use crate::square::Square;

/// APGD-CE as AutoAttack's standard version runs it: ℓ∞, 100 iterations, one restart.
pub fn apgd_ce(eps: f64, seed: u64) -> Apgd {
    Apgd { eps, steps: 100, norm: Norm::Linf, restarts: 1, loss: LossKind::CrossEntropy, seed }
}

/// The standard sequence: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries).
pub fn standard(eps: f64, seed: u64) -> Vec<Box<dyn Attack>> {
    vec![
        Box::new(apgd_ce(eps, seed)),
        Box::new(ApgdTargeted::standard(eps, seed)),
        Box::new(FabTargeted::standard(eps)),
        Box::new(Square::standard(eps, seed)),
    ]
}

/// The fast sequence: APGD-CE, APGD-T (9 targets).
pub fn fast(eps: f64, seed: u64) -> Vec<Box<dyn Attack>> {
    vec![Box::new(apgd_ce(eps, seed)), Box::new(ApgdTargeted::standard(eps, seed))]
}
