//! What every step builder of one run shares: the run, its preset, the data, and paths in its
//! folder; a step from a command line. The command lines themselves come from the run contract
//! (`awt_runs::settings`, built with `awt_runs::argv::Argv`).

use std::path::PathBuf;

use awt_runs::argv::Argv;
use awt_runs::settings::TicketJob;

use crate::spec::Spec;

use super::run::{Run, Step};

/// What every step builder of one run needs.
pub(super) struct Ctx<'a> {
    pub(super) run: &'a Run,
    pub(super) spec: &'a Spec,
    pub(super) data: &'a str,
}

impl Ctx<'_> {
    /// A numeric flag of the run's ablation (`final-epochs`), if it sets one.
    pub(super) fn flag(&self, key: &str) -> Option<usize> {
        self.run.flags.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok())
    }

    /// A path in the run folder, as an argument.
    pub(super) fn d(&self, p: &str) -> String {
        self.run.dir.join(p).display().to_string()
    }

    /// The recipe's `awt train` flags for `epochs` epochs.
    pub(super) fn train_flags(&self, epochs: usize) -> Argv {
        self.spec.train.flags(self.data, self.run.seed, epochs)
    }

    /// The ticket job of this run starting from `model`, writing `out`.
    pub(super) fn job<'a>(&'a self, model: &'a str, out: &'a str) -> TicketJob<'a> {
        TicketJob {
            method: self.run.method,
            density: self.run.density,
            model,
            data: self.data,
            eps: self.spec.train.eps,
            seed: self.run.seed,
            out,
        }
    }
}

/// The step `name` running `args`, done once `done` exists.
pub(super) fn step(name: &str, args: Argv, done: String) -> Step {
    Step { name: name.into(), args: args.into_vec(), done: PathBuf::from(done), resume_from: None }
}
