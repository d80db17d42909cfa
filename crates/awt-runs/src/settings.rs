//! The settings of each `awt` command a grid runs, as a preset writes them (`experiments/*.toml`
//! tables, read with serde; unknown keys refused), and the command lines they give: each flag is
//! spelled here once, beside the setting it carries. The binary's test
//! `argv_from_the_contract_parses_to_the_same_settings` parses every line built here with the
//! binary's own flag parser and checks it gets the same values back.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::argv::Argv;
use crate::{Density, Method};

/// How networks are initialised (`awt init`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Init {
    /// `awt init --init`.
    pub scheme: Option<String>,
    /// Standardise inputs by the dataset's training statistics.
    #[serde(default)]
    pub standardize: bool,
}

/// The training recipe shared by every ticket (`awt train`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// `--adv`: the training objective (`pgd`, `fgsm`, `trades`, `clean`).
    pub adv: String,
    /// `--eps`: the ℓ∞ budget of training and of every attack of the grid.
    pub eps: f64,
    /// `--steps`: PGD steps of training.
    pub steps: usize,
    /// `--step-size`: PGD's step.
    pub step_size: f64,
    /// `--epochs`.
    pub epochs: usize,
    /// `--batch`.
    pub batch: usize,
    /// `--opt`: `sgd`, `adam`, `adamw`.
    pub opt: String,
    /// `--lr`.
    pub lr: f64,
    /// `--train-limit`: train on the first this many images only.
    pub train_limit: Option<usize>,
    /// `--eval-n`: images of the per-epoch evaluation.
    pub eval_n: usize,
    /// `--eval-steps`: PGD steps of the per-epoch evaluation.
    pub eval_steps: usize,
    /// `--wd`: weight decay.
    pub wd: Option<f64>,
    /// `--schedule` (default constant).
    pub schedule: Option<String>,
    /// Track each net's adversarial kernel against its dense initialisation (default true).
    pub track_kernel: Option<bool>,
}

impl Train {
    /// The recipe's `awt train` flags for `epochs` epochs on `data` with `seed` (progress quiet).
    pub fn flags(&self, data: &str, seed: u64, epochs: usize) -> Argv {
        // The attack's flags are asked about (`reads`): natural training reads neither.
        Argv::flags()
            .flag("--data", data)
            .flag("--adv", &self.adv)
            .flag("--eps", self.eps)
            // The attack's settings where the objective runs one (`--adv none` does not).
            .flag_opt("--steps", self.reads("--steps").then_some(self.steps))
            .flag_opt("--step-size", self.reads("--step-size").then_some(self.step_size))
            .flag("--epochs", epochs)
            .flag("--batch", self.batch)
            .flag("--opt", &self.opt)
            .flag("--lr", self.lr)
            .flag("--eval-n", self.eval_n)
            .flag("--eval-steps", self.eval_steps)
            .flag("--seed", seed)
            .switch("--quiet")
            .flag_opt("--train-limit", self.train_limit)
            .flag_opt("--wd", self.wd)
            .flag_opt("--schedule", self.schedule.as_ref())
    }

    /// Does this recipe's objective read `flag` of `awt train`?
    fn reads(&self, flag: &str) -> bool {
        crate::reads::reads("train", flag, &self.adv)
    }
}

/// What every command that makes a ticket is given.
#[derive(Debug, Clone, Copy)]
pub struct TicketJob<'a> {
    /// The method.
    pub method: Method,
    /// The density.
    pub density: Density,
    /// The network it starts from.
    pub model: &'a str,
    /// The data set.
    pub data: &'a str,
    /// The ℓ∞ budget of its adversarial inputs.
    pub eps: f64,
    /// The seed.
    pub seed: u64,
    /// The ticket it writes.
    pub out: &'a str,
}

impl TicketJob<'_> {
    /// `awt <command> --method --density --model --data` of this job: how every ticket command begins.
    fn command(&self, command: &str) -> Argv {
        Argv::new(command)
            .flag("--method", self.method)
            .flag("--density", self.density)
            .flag("--model", self.model)
            .flag("--data", self.data)
    }
}

/// The NTT / AWT search (`awt ticket`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// `--steps`.
    pub steps: usize,
    /// `--batch`.
    pub batch: usize,
    /// `--lr`.
    pub lr: f64,
    /// `--lambda-ker`: the kernel term's weight.
    pub lambda_ker: f64,
    /// `--lambda-l2`.
    pub lambda_l2: f64,
    /// `--mask-every`: steps between mask re-selections.
    pub mask_every: usize,
    /// `--attack-steps`: PGD steps of the adversarial inputs.
    pub attack_steps: usize,
}

impl Search {
    /// `awt ticket` for `job` (progress quiet). The attack's flags go to AWT only: NTT matches on
    /// clean inputs, and `awt ticket` refuses flags its method does not read.
    pub fn ticket(&self, job: &TicketJob) -> Argv {
        let argv = job
            .command("ticket")
            .flag("--steps", self.steps)
            .flag("--batch", self.batch)
            .flag("--lr", self.lr)
            .flag("--lambda-ker", self.lambda_ker)
            .flag("--lambda-l2", self.lambda_l2)
            .flag("--mask-every", self.mask_every);
        let argv = if job.method == Method::Awt {
            argv.flag("--eps", job.eps).flag("--attack-steps", self.attack_steps)
        } else {
            argv
        };
        argv.flag("--seed", job.seed).switch("--quiet").flag("--out", job.out)
    }
}

/// Pruning at initialisation (`awt prune`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    /// `--batch`: images the data-dependent scores see.
    pub batch: usize,
    /// `--rounds`: SynFlow's rounds.
    pub rounds: usize,
    /// `--allocation` per method (e.g. `{ snip = "global" }`, as SNIP's paper ranks); methods not
    /// listed prune per layer.
    #[serde(default)]
    pub allocation: BTreeMap<String, String>,
}

impl Prune {
    /// `awt prune` of a mask at initialisation for `job`.
    pub fn mask(&self, job: &TicketJob) -> Argv {
        job.command("prune")
            .flag("--batch", self.batch)
            .flag("--rounds", self.rounds)
            .flag("--seed", job.seed)
            .flag("--out", job.out)
            .flag_opt("--allocation", self.allocation.get(job.method.name()))
    }
}

/// IMP-AT: rounds of adversarial training and magnitude pruning with rewinding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imp {
    /// `--imp-rounds`.
    pub rounds: usize,
    /// `--imp-epochs`: epochs of each round.
    pub epochs: usize,
    /// Epochs of the final training of the ticket (default: `[train] epochs`); compute-matched
    /// IMP-AT shortens it so rounds and final training add up to the dense net's budget.
    pub final_epochs: Option<usize>,
}

impl Imp {
    /// `awt prune --method imp-at` for `job`, each round `epochs` epochs of the recipe `train`.
    pub fn rounds(&self, job: &TicketJob, epochs: usize, train: &Train) -> Argv {
        job.command("prune")
            .flag("--imp-rounds", self.rounds)
            .flag("--imp-epochs", epochs)
            .flag("--eps", job.eps)
            .flag("--attack-steps", train.steps)
            .flag("--step-size", train.step_size)
            .flag("--seed", job.seed)
            .flag("--out", job.out)
            .flag_opt("--train-limit", train.train_limit)
    }
}

/// HYDRA: adversarial pretraining, then score optimisation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hydra {
    /// Epochs of adversarial pretraining (`awt train`).
    pub pretrain_epochs: usize,
    /// `--hydra-epochs`: epochs of score optimisation.
    pub epochs: usize,
    /// `--hydra-lr`.
    pub lr: f64,
    /// Epochs of fine-tuning the pruned net (default: `[train] epochs`).
    pub finetune_epochs: Option<usize>,
}

impl Hydra {
    /// `awt prune --method hydra` for `job` (its model the pretrained net), `epochs` epochs of score
    /// optimisation under the recipe `train`'s attack.
    pub fn scores(&self, job: &TicketJob, epochs: usize, train: &Train) -> Argv {
        job.command("prune")
            .flag("--hydra-epochs", epochs)
            .flag("--hydra-lr", self.lr)
            .flag("--eps", job.eps)
            .flag("--attack-steps", train.steps)
            .flag("--step-size", train.step_size)
            .flag("--seed", job.seed)
            .flag("--out", job.out)
            .flag_opt("--train-limit", train.train_limit)
    }
}

/// The final evaluation (`awt eval`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eval {
    /// `--attack` (default `worst`).
    pub attack: Option<String>,
    /// Also evaluate with AutoAttack's standard sequence, into `eval-aa.json`.
    #[serde(default)]
    pub autoattack: bool,
    /// AutoAttack on the first this many test images (default: all `n`). Its Square attack makes it
    /// the dearest evaluation by far (≈ 25 minutes per LeNet-300-100 on 10,000 images on 2 cores).
    #[serde(default)]
    pub autoattack_n: Option<usize>,
    /// `--limit`: images evaluated.
    pub n: usize,
    /// `--steps`: PGD steps.
    pub steps: usize,
    /// `--apgd-steps`.
    pub apgd_steps: usize,
    /// `--split`: `test` (default) or `validation` (needs the preset's `validation`).
    pub split: Option<String>,
    /// A security curve at these ε (ascending) with the same attacks, into `curve.json`
    /// (`awt eval --eps-curve`); none without.
    #[serde(default)]
    pub curve: Option<Vec<f64>>,
}

impl Eval {
    /// `awt eval` of `model` on `data` at budget `eps`, the attacks seeded by `seed`, into `json`.
    pub fn worst(&self, model: &str, data: &str, eps: f64, seed: u64, json: &str) -> Argv {
        let attack = self.attack.as_deref().unwrap_or("worst");
        let reads = |flag| crate::reads::reads("eval", flag, attack);
        Argv::new("eval")
            .flag("--model", model)
            .flag("--data", data)
            .flag("--limit", self.n)
            .flag("--attack", attack)
            .flag("--eps", eps)
            .flag_opt("--steps", reads("--steps").then_some(self.steps))
            .flag_opt("--apgd-steps", reads("--apgd-steps").then_some(self.apgd_steps))
            .flag("--seed", seed)
            .flag("--json", json)
            .flag_opt("--split", self.split.as_ref())
    }

    /// With `curve`: the evaluation `worst` at each of the curve's ε instead of one, into `json`.
    pub fn curve(&self, worst: &Argv, json: &str) -> Option<Argv> {
        let eps = self.curve.as_ref()?;
        let list: Vec<String> = eps.iter().map(f64::to_string).collect();
        Some(
            worst.clone().without("--eps").ablated(&[("json".into(), json.into())]).flag("--eps-curve", list.join(",")),
        )
    }

    /// With `autoattack`: the same evaluation with AutoAttack on its `autoattack_n` images, into `json`.
    pub fn autoattack(&self, worst: &Argv, json: &str) -> Option<Argv> {
        let n = self.autoattack_n.unwrap_or(self.n).to_string();
        self.autoattack.then(|| {
            let aa = worst.clone().ablated(&[
                ("attack".into(), "autoattack".into()),
                ("json".into(), json.into()),
                ("limit".into(), n),
            ]);
            // PGD's steps are the worst case's, not AutoAttack's; APGD's it shares.
            let dropped: Vec<&str> = crate::reads::of("eval")
                .filter(|r| aa.value(r.flag).is_some() && !r.readers.contains(&"autoattack"))
                .map(|r| r.flag)
                .collect();
            dropped.into_iter().fold(aa, Argv::without)
        })
    }
}

/// `awt dynamics` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamics {
    /// `--probe`: probe points (the first test images).
    pub probe: usize,
    /// `--steps`: PGD steps of the probe's adversarial examples.
    pub steps: usize,
}
