//! The command line's shared argument types: the dataset flags, and every flag that takes one of a
//! fixed set of values as an enum (clap lists the values in `--help` and refuses any other, naming
//! the flag). Names written to run configurations are the same as on the command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Serialize;

/// The dataset flags every data-reading subcommand shares.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DataArgs {
    /// Dataset name (see `awt data list`).
    #[arg(long = "data", value_name = "DATASET", default_value = "fashion-mnist-mini")]
    pub name: String,
    /// Look here first for the dataset's files (else AWT_DATA_DIR, the system dataset folder, the HF cache).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use files whose SHA-256 differs from the pinned one (the results record it).
    #[arg(long)]
    pub allow_checksum_mismatch: bool,
    /// Hold the last N training images out as a validation split: training, searches and pruning
    /// use the rest, held-out evaluations (`--split validation`, training's per-epoch evaluation)
    /// use them, and the test split is not read for either.
    #[arg(long, value_name = "N")]
    pub validation: Option<usize>,
}

impl DataArgs {
    /// The flags for dataset `name` in the default places.
    pub(crate) fn named(name: String, data_dir: Option<PathBuf>) -> DataArgs {
        DataArgs { name, data_dir, allow_checksum_mismatch: false, validation: None }
    }

    /// Loads the dataset; errors name the flag. Files not verified against a pinned checksum get a
    /// warning here, and every result file records them (`dataset_unverified`).
    pub(crate) fn load(&self) -> Result<awt_data::Dataset> {
        let opts = awt_data::LoadOptions {
            allow_checksum_mismatch: self.allow_checksum_mismatch,
            ..awt_data::LoadOptions::from_env(self.data_dir.clone())
        };
        let mut ds = awt_data::load(&self.name, &opts).with_context(|| format!("--data {}", self.name))?;
        if let Some(n) = self.validation {
            ds.hold_out_validation(n).with_context(|| format!("--validation {n}"))?;
        }
        let unverified = ds.provenance.unverified();
        if !unverified.is_empty() {
            tracing::warn!(dataset = %self.name, files = ?unverified, "files not verified against pinned checksums");
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "warning: --data {}: not verified against pinned checksums: {}; results record this",
                    self.name,
                    unverified.join(", ")
                );
            }
        }
        Ok(ds)
    }

    /// Loads the dataset and checks that `net` can read its images and that its output has a
    /// logit for every label (a 5-class MLP cannot train on 10 classes).
    pub(crate) fn load_for(&self, net: &awt_nets::Net) -> Result<awt_data::Dataset> {
        let ds = self.load()?;
        let expect: usize = net.arch().input_shape().iter().product();
        if expect != ds.train.image_size() {
            anyhow::bail!(
                "--data {}: {} takes inputs of {expect} values ({:?}), its images are {:?}",
                self.name,
                net.arch(),
                net.arch().input_shape(),
                ds.train.shape
            );
        }
        let labels = ds.train.labels.iter().chain(&ds.test.labels).copied().max().map_or(0, |m| m as usize + 1);
        if net.arch().classes() < labels {
            anyhow::bail!(
                "--data {}: the dataset has {labels} classes but {} has {} outputs",
                self.name,
                net.arch(),
                net.arch().classes()
            );
        }
        Ok(ds)
    }
}

/// `--split`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitArg {
    Train,
    Test,
    /// The training images held out by `--validation N`.
    Validation,
}

impl SplitArg {
    /// The split of `ds`; the validation split exists only when `--validation` held one out.
    pub(crate) fn of(self, ds: &awt_data::Dataset) -> Result<&awt_data::Split> {
        match self {
            SplitArg::Train => Ok(&ds.train),
            SplitArg::Test => Ok(&ds.test),
            SplitArg::Validation => ds
                .validation
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--split validation needs --validation N (the images to hold out)")),
        }
    }
}

/// The name clap uses for a value (the same as in config files and JSON records).
pub(crate) fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// `awt train --adv`: the training objective.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Adv {
    /// Cross-entropy on clean inputs.
    None,
    /// PGD-AT (Madry et al.), trained on the last iterate.
    Pgd,
    /// Fast AT: one FGSM step from a random start (Wong et al.).
    Fgsm,
    /// TRADES (Zhang et al.).
    Trades,
}

/// `awt train --opt`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Opt {
    /// SGD with momentum (PyTorch semantics).
    Sgd,
    /// Adam with L2 decay in the gradient.
    Adam,
    /// Adam with decoupled decay.
    Adamw,
}

/// `awt train --schedule`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Sched {
    Constant,
    Cosine,
    /// Multiply by --gamma at each of --milestones.
    Multistep,
    /// Linear warm-up over --warmup of the steps, then linear decay.
    Onecycle,
}

/// `awt eval --attack`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttackArg {
    /// Clean accuracy only.
    None,
    Fgsm,
    Pgd,
    ApgdCe,
    ApgdDlr,
    /// PGD, then APGD-CE and APGD-DLR on the points still standing.
    Worst,
    /// APGD on the targeted DLR loss, over the top --targets other classes.
    ApgdT,
    /// FAB-T (ℓ∞): the closest adversarial example toward each of the top --targets classes.
    FabT,
    /// The gradient-free Square attack (ℓ∞), --square-queries queries.
    Square,
    /// AutoAttack's standard version: APGD-CE, APGD-T, FAB-T, Square on the points still standing.
    Autoattack,
    /// AutoAttack's fast subset: APGD-CE, APGD-T.
    AutoattackFast,
}

/// `--norm`: the threat model.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NormArg {
    Linf,
    L2,
}

impl From<NormArg> for awt_attack::Norm {
    fn from(n: NormArg) -> awt_attack::Norm {
        match n {
            NormArg::Linf => awt_attack::Norm::Linf,
            NormArg::L2 => awt_attack::Norm::L2,
        }
    }
}

/// `awt eval --loss`: PGD's loss.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LossArg {
    /// Cross-entropy.
    Ce,
    /// Carlini–Wagner margin.
    Cw,
}

/// `awt prune --method`: the run contract's methods that `awt prune` makes (masks at initialisation,
/// IMP-AT, HYDRA), so the list is not restated here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PruneMethod(pub awt_runs::Method);

impl ValueEnum for PruneMethod {
    fn value_variants<'a>() -> &'a [Self] {
        use awt_runs::{Method, TicketRecipe};
        static ALL: std::sync::LazyLock<Vec<PruneMethod>> = std::sync::LazyLock::new(|| {
            let made_by_prune = [TicketRecipe::MaskAtInit, TicketRecipe::Hydra, TicketRecipe::ImpAt];
            Method::ALL.into_iter().filter(|m| made_by_prune.contains(&m.recipe())).map(PruneMethod).collect()
        });
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.about()))
    }
}

/// `awt prune --allocation`: how a density is spread over layers.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllocArg {
    /// The same density in every layer (the paper's choice).
    Uniform,
    /// One threshold over all layers.
    Global,
    /// Erdős–Rényi-kernel.
    Erk,
}

impl From<AllocArg> for awt_prune::Allocation {
    fn from(a: AllocArg) -> awt_prune::Allocation {
        match a {
            AllocArg::Uniform => awt_prune::Allocation::Uniform,
            AllocArg::Global => awt_prune::Allocation::Global,
            AllocArg::Erk => awt_prune::Allocation::Erk,
        }
    }
}

/// `awt prune --rescale`: what happens to a mask's kept weights at initialisation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RescaleArg {
    /// They keep their initial values (the paper's baselines).
    None,
    /// Each unit's kept incoming weights are scaled to the norm of its dense incoming weights.
    UnitNorm,
}

/// `awt prune --shuffle`: a mask at initialisation as chosen, or each layer's permuted at random.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShuffleArg {
    /// As the score chose it.
    None,
    /// Each layer's mask permuted at random, its density kept ("missing the mark"'s sanity check).
    Layer,
}

/// `awt ticket --method`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchMethod {
    /// Kernel and output matching on adversarial inputs.
    Awt,
    /// Neural Tangent Transfer: the same on clean inputs.
    Ntt,
}

/// `awt ticket --adv-source`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdvSourceArg {
    Teacher,
    Student,
    Both,
}

/// `awt ticket --inputs`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputsArg {
    Adversarial,
    #[value(name = "clean+adversarial")]
    CleanAdversarial,
}

/// `awt ticket --weights`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeightsArg {
    /// m ⊙ θ_s, the transferred student weights.
    Transferred,
    /// m ⊙ θ_T, rewound to the initialisation.
    Rewind,
}

/// `awt ntk --adv`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NtkAdv {
    /// PGD examples of the model itself.
    Pgd,
}

/// `awt ntk --impl`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NtkImpl {
    /// The differentiable structured kernel (fast).
    Structured,
    /// Per-example autograd Jacobians (slow oracle).
    Reference,
}

/// `--output-layer`: whether masks prune the output layer like the others.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum OutputLayerArg {
    /// Pruned at the density like every other layer (a class can lose every incoming weight).
    #[default]
    Pruned,
    /// Kept whole and counted in the overall density; the other layers share the rest.
    Dense,
}

impl OutputLayerArg {
    /// The layers to keep dense in `arch`'s masks.
    pub(crate) fn keep_dense(self, arch: &awt_nets::Arch) -> Vec<String> {
        match self {
            OutputLayerArg::Pruned => Vec::new(),
            OutputLayerArg::Dense => vec![arch.output_weight()],
        }
    }
}

#[cfg(test)]
mod tests {
    use awt_runs::{Method, TicketRecipe};
    use clap::ValueEnum;

    use super::{PruneMethod, SearchMethod};

    /// The binary's `--method` choices are the run contract's methods, each under the subcommand
    /// its recipe names: `awt prune` for masks at initialisation, IMP-AT and HYDRA, `awt ticket` for
    /// the searches. A method added to `awt_runs::Method` fails here until the binary runs it.
    #[test]
    fn method_flags_are_the_contracts_methods() {
        let names = |v: &[Option<clap::builder::PossibleValue>]| -> Vec<String> {
            v.iter().flatten().map(|p| p.get_name().to_string()).collect()
        };
        let prune = names(&PruneMethod::value_variants().iter().map(|m| m.to_possible_value()).collect::<Vec<_>>());
        let search = names(&SearchMethod::value_variants().iter().map(|m| m.to_possible_value()).collect::<Vec<_>>());
        let by = |rs: &[TicketRecipe]| -> Vec<String> {
            let mut v: Vec<String> =
                Method::ALL.iter().filter(|m| rs.contains(&m.recipe())).map(|m| m.name().to_string()).collect();
            v.sort();
            v
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(sorted(prune), by(&[TicketRecipe::MaskAtInit, TicketRecipe::ImpAt, TicketRecipe::Hydra]));
        assert_eq!(sorted(search), by(&[TicketRecipe::Search]));
    }
}
