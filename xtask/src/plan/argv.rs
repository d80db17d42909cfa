//! Building a step's `awt` command line: the context every builder of one run shares, the training
//! recipe's flags, and an ablation's flags replacing or joining a step's own.

use std::path::PathBuf;

use crate::spec::Spec;

use super::run::{Run, Step};

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Flags of the common training recipe, for `epochs` epochs.
pub(super) fn train_flags(run: &Run, spec: &Spec, data: &str, epochs: usize) -> Vec<String> {
    let t = &spec.train;
    let mut f = strings(&["--data", data, "--adv", &t.adv, "--eps", &t.eps.to_string()]);
    f.extend(strings(&["--steps", &t.steps.to_string(), "--step-size", &t.step_size.to_string()]));
    f.extend(strings(&["--epochs", &epochs.to_string(), "--batch", &t.batch.to_string(), "--opt", &t.opt]));
    f.extend(strings(&["--lr", &t.lr.to_string(), "--eval-n", &t.eval_n.to_string()]));
    f.extend(strings(&["--eval-steps", &t.eval_steps.to_string(), "--seed", &run.seed.to_string(), "--quiet"]));
    if let Some(n) = t.train_limit {
        f.extend(strings(&["--train-limit", &n.to_string()]));
    }
    if let Some(wd) = t.wd {
        f.extend(strings(&["--wd", &wd.to_string()]));
    }
    if let Some(s) = &t.schedule {
        f.extend(strings(&["--schedule", s]));
    }
    f
}

/// What every step builder of one run needs.
pub(super) struct Ctx<'a> {
    pub(super) run: &'a Run,
    pub(super) spec: &'a Spec,
    pub(super) data: &'a str,
    pub(super) seed: String,
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
}

pub(super) fn step(name: &str, args: Vec<String>, done: String) -> Step {
    Step { name: name.into(), args, done: PathBuf::from(done), resume_from: None }
}

/// `args` with an ablation's `flags` (name without dashes, value) replacing or joining its own.
pub(super) fn with_flags(mut args: Vec<String>, flags: &[(String, String)]) -> Vec<String> {
    for (flag, value) in flags {
        let name = format!("--{flag}");
        match args.iter().position(|a| *a == name) {
            Some(i) => args[i + 1] = value.clone(),
            None => args.extend([name, value.clone()]),
        }
    }
    args
}
