//! `awt prune`: masks at initialisation (random, magnitude, SNIP, GraSP, SynFlow, NTK-SAP), and the
//! train-then-prune baselines (HYDRA on a pretrained network; IMP-AT rounds, or one round with
//! --rewind).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use awt_base::Staged;
use awt_nets::{Arch, Net};
use awt_prune::{Allocation, Target, scores, select_keeping};
use awt_runs::{Density, Method, TicketRecipe, layout};
use candle_core::{DType, Device, Module, Tensor, Var};
use clap::Args;

use crate::args::{Adv, AllocArg, DataArgs, Opt, OutputLayerArg, PruneMethod, RescaleArg, ShuffleArg, value_name};
use crate::output::git_commit;

/// Flags of `awt prune`.
#[derive(Args, Debug, Clone)]
pub(crate) struct PruneArgs {
    /// At initialisation: random, magnitude, snip, grasp, synflow, ntk-sap; after training: hydra (on an
    /// adversarially pretrained --model), imp-at (rounds from the initialisation --model); one IMP
    /// round is magnitude with --rewind.
    #[arg(long, value_enum)]
    pub method: PruneMethod,
    /// Fraction of weights kept, in (0, 1].
    #[arg(long)]
    pub density: Density,
    /// How the density is spread over layers.
    #[arg(long, value_enum, default_value_t = AllocArg::Uniform)]
    pub allocation: AllocArg,
    /// Masks at initialisation: keep in each layer as many weights as this masked checkpoint of the
    /// same architecture keeps there (another method's allocation over layers), by this method's own
    /// scores in each layer, instead of --allocation; its overall density must be --density.
    #[arg(long, value_name = "MASKED", conflicts_with = "allocation")]
    pub layer_densities_from: Option<PathBuf>,
    /// Prune the output layer like the others, or keep it dense (counted in --density).
    #[arg(long, value_enum, default_value_t = OutputLayerArg::Pruned)]
    pub output_layer: OutputLayerArg,
    /// Masks at initialisation: scale each unit's kept incoming weights back to its dense norm
    /// (unit-norm; ≈ 1/√density for a random mask), or keep them as initialised (none).
    #[arg(long, value_enum, default_value_t = RescaleArg::None)]
    pub rescale: RescaleArg,
    /// Masks at initialisation: keep each layer's mask as the score chose it (none), or permute it at
    /// random within the layer (layer: the density per layer kept, from --seed).
    #[arg(long, value_enum, default_value_t = ShuffleArg::None)]
    pub shuffle: ShuffleArg,
    /// The dense network at initialisation.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture of a foreign state dict.
    #[arg(long)]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub data: DataArgs,
    /// SNIP and GraSP score one batch of this many examples from the training split of --data.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// SynFlow rounds.
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    #[command(flatten)]
    pub ntk_sap: crate::prune_sap::SapArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Lottery-ticket rewinding (one round of IMP): score the (trained, possibly already masked)
    /// --model by magnitude among its kept weights, and write the mask over this checkpoint's
    /// weights (usually the initialisation). Only with --method magnitude.
    #[arg(long)]
    pub rewind: Option<PathBuf>,
    /// HYDRA: epochs of score optimisation under the PGD-AT loss (--model must be adversarially pretrained).
    #[arg(long, default_value_t = 2)]
    pub hydra_epochs: usize,
    /// HYDRA: score learning rate (SGD, momentum 0.9, HYDRA's per-epoch cosine schedule).
    #[arg(long, default_value_t = 0.1)]
    pub hydra_lr: f64,
    /// HYDRA: ℓ∞ radius of the robust loss.
    #[arg(long, default_value_t = 0.1)]
    pub eps: f64,
    /// HYDRA / IMP-AT: PGD steps of the robust loss.
    #[arg(long, default_value_t = 10)]
    pub attack_steps: usize,
    /// HYDRA / IMP-AT: PGD step size of the robust loss (default 0.25 ε).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// HYDRA / IMP-AT: use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// IMP-AT: rounds of (PGD-AT training, magnitude pruning to density^(r/R), rewind to --model).
    #[arg(long, default_value_t = 3)]
    pub imp_rounds: usize,
    /// IMP-AT: training epochs per round (Adam 1e-3, batch 128, PGD with --eps and --attack-steps).
    #[arg(long, default_value_t = 2)]
    pub imp_epochs: usize,
    #[arg(long)]
    pub out: PathBuf,
}

fn weights(net: &Net) -> BTreeMap<String, Tensor> {
    net.weights().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

/// The mean cross-entropy of the logits divided by `temperature` (1 for SNIP, GraSP's 200 for GraSP).
fn ce(net: &Net, x: &Tensor, y: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let logits = (net.forward(x)? / temperature)?;
    awt_attack::per_example_loss(&logits, y, None, awt_attack::LossKind::CrossEntropy)?.mean_all()
}

/// GraSP's scores as its code computes them: the cross-entropy of the logits divided by
/// [`scores::GRASP_TEMPERATURE`], in f64 (the finite-difference Hessian-gradient product of a tempered
/// loss, whose gradients are about 1/T of the untempered ones, would be mostly rounding in f32).
fn grasp_scores(net: &Net, x: &Tensor, y: &Tensor) -> Result<scores::Scores> {
    let net = net.to_dtype(DType::F64)?;
    let x = x.to_dtype(DType::F64)?;
    let vars: BTreeMap<String, Var> = net.weights().map(|(k, v)| (k.clone(), v.clone())).collect();
    let t = scores::GRASP_TEMPERATURE;
    Ok(scores::grasp(&|| ce(&net, &x, y, t), &vars, 1e-5)?)
}

/// Masks for `a.method` on the dense `net`.
pub(crate) fn prune_masks(net: &Net, a: &PruneArgs) -> Result<BTreeMap<String, Tensor>> {
    let alloc = Allocation::from(a.allocation);
    let batch = || -> Result<(Tensor, Tensor)> {
        let ds = a.data.load_for(net)?;
        let idx: Vec<usize> = awt_data::epoch_order(ds.train.len(), a.seed, 0).into_iter().take(a.batch).collect();
        let (x, y) = ds.train.batch(&idx, &net.device())?;
        Ok((x.to_dtype(net.dtype())?, y))
    };
    let vars: BTreeMap<String, Var> = net.weights().map(|(k, v)| (k.clone(), v.clone())).collect();
    let dense = a.output_layer.keep_dense(net.arch());
    let counts = match &a.layer_densities_from {
        Some(p) => Some(crate::counts::fitting(p, net, a.density, &dense)?),
        None => None,
    };
    let target = match &counts {
        Some(c) => Target::Counts(c),
        None => Target::Density { density: a.density, alloc, dense: &dense },
    };
    let select = |s: &BTreeMap<String, Tensor>| target.select(s);
    let masks = match a.method.0 {
        Method::Random => select(&scores::random(&weights(net), a.seed)?)?,
        Method::Magnitude => select(&scores::magnitude(&weights(net))?)?,
        Method::Snip => {
            let (x, y) = batch()?;
            select(&scores::snip(&|| ce(net, &x, &y, 1.0), &vars)?)?
        }
        Method::Grasp => {
            let (x, y) = batch()?;
            select(&grasp_scores(net, &x, &y)?)?
        }
        Method::Synflow => scores::synflow(&net.stages(), &net.arch().input_shape(), target, a.rounds)?,
        Method::NtkSap => crate::prune_sap::masks(net, &a.ntk_sap, a.seed, target)?,
        Method::Hydra | Method::ImpAt | Method::Dense | Method::Ntt | Method::Awt => {
            bail!("--method {}: not a mask at initialisation", value_name(&a.method))
        }
    };
    Ok(masks)
}

/// One IMP round: magnitude masks of the trained `--model` (within its masks), over the weights of `--rewind`.
fn run_rewind(a: &PruneArgs, rewind: &std::path::Path, dev: &Device) -> Result<()> {
    if a.method.0 != Method::Magnitude {
        bail!("--rewind works with --method magnitude (iterative magnitude pruning), not {}", value_name(&a.method));
    }
    let trained = awt_nets::load(&a.model, a.arch.as_ref(), DType::F32, dev)?.net;
    let mut net = awt_nets::load(rewind, a.arch.as_ref(), DType::F32, dev)?.net;
    if net.arch() != trained.arch() {
        bail!("--rewind {} is a {}, --model {} a {}", rewind.display(), net.arch(), a.model.display(), trained.arch());
    }
    let alloc = Allocation::from(a.allocation);
    let mut sc = scores::magnitude(&weights(&trained))?;
    for (k, m) in trained.masks() {
        let s = sc[k].mul(m)?;
        sc.insert(k.clone(), s);
    }
    let before = trained.densities()?;
    for (k, d) in &before {
        if a.density.get() > *d + 1e-12 {
            bail!("--density {} is above the current density {d:.4} of `{k}`: IMP only removes weights", a.density);
        }
    }
    let masks = select_keeping(&sc, a.density, alloc, &a.output_layer.keep_dense(net.arch()))?;
    net.clear_masks();
    for (k, m) in &masks {
        net.set_mask(k, m)?;
    }
    net.apply_masks()?;
    net.meta.insert("method".into(), "imp-at".into());
    net.meta.insert("density".into(), a.density.to_string());
    net.meta.insert("rewound_to".into(), rewind.display().to_string());
    net.meta.insert("scored_from".into(), a.model.display().to_string());
    net.meta.insert("git_commit".into(), git_commit().into());
    awt_nets::save(&net, &a.out)?;
    crate::output::report_pruned(&net, &a.out)
}

/// The PGD step of HYDRA's robust loss: `--step-size`, else 0.25 ε; one attack serves pretraining,
/// score optimisation and fine-tuning, as in HYDRA's code (docs/checks.md, reliability row 21).
fn attack_step(a: &PruneArgs) -> f64 {
    a.step_size.unwrap_or_else(|| awt_attack::Pgd::train_step(a.eps))
}

/// HYDRA's pruning stage on an adversarially pretrained --model.
fn run_hydra(a: &PruneArgs, dev: &Device) -> Result<()> {
    if a.hydra_epochs < 2 {
        bail!(
            "--hydra-epochs must be ≥ 2: HYDRA's per-epoch cosine schedule (its code's) is 0 at the only epoch of 1, \
             so no score would move"
        );
    }
    let net = awt_nets::load(&a.model, a.arch.as_ref(), DType::F32, dev)?.net;
    let ds = a.data.load_for(&net)?;
    let train = match a.train_limit {
        Some(n) => ds.train.subset(0, n.min(ds.train.len()))?,
        None => ds.train.clone(),
    };
    let cfg = awt_ticket::HydraConfig {
        density: a.density,
        epochs: a.hydra_epochs,
        lr: a.hydra_lr,
        eps: a.eps,
        steps: a.attack_steps,
        step_size: attack_step(a),
        batch: 128,
        seed: a.seed,
        keep_dense: a.output_layer.keep_dense(net.arch()),
    };
    // The work folder belongs to this output (its name is derived from it, and the output is locked).
    let work = crate::files::beside(&a.out, "hydra");
    let _ = std::fs::remove_dir_all(&work);
    let mut ticket = awt_ticket::hydra(&net, &train, ds.eval_split().0, &cfg, &work)?;
    ticket.meta.insert("git_commit".into(), git_commit().into());
    ticket.meta.insert("pretrained".into(), a.model.display().to_string());
    awt_nets::save(&ticket, &a.out)?;
    crate::output::report_pruned(&ticket, &a.out)
}

/// IMP-AT as one command: rounds of adversarial training and magnitude pruning with rewinding to
/// the initialisation `--model` (lottery tickets); work folders sit beside `--out`. A killed run
/// continues where it stopped: finished rounds are kept, an interrupted training resumes.
fn run_imp(a: &PruneArgs, dev: &Device) -> Result<()> {
    if a.imp_rounds == 0 {
        bail!("--imp-rounds must be ≥ 1");
    }
    if a.imp_epochs == 0 {
        bail!("--imp-epochs must be ≥ 1 (training epochs of each round)");
    }
    let work = crate::files::beside(&a.out, "imp");
    imp_work_folder(a, &work)?;
    let mut current = a.model.clone();
    for r in 1..=a.imp_rounds {
        let dir = work.join(format!("round{r}"));
        let ticket = work.join(format!("round{r}-ticket.safetensors"));
        if !ticket.exists() {
            if !dir.join(layout::MODEL).exists() {
                crate::train::run_training(&imp_round(a, &current, r > 1, &dir)?, dev, false)?;
            }
            let round = PruneArgs {
                method: PruneMethod(Method::Magnitude),
                density: Density::new(a.density.get().powf(r as f64 / a.imp_rounds as f64))?,
                model: dir.join(layout::MODEL),
                rewind: Some(a.model.clone()),
                out: ticket.clone(),
                ..a.clone()
            };
            run_rewind(&round, &a.model, dev)?;
        }
        current = ticket;
    }
    // The last round's ticket is the output (written again, so an output replaced since is restored).
    let net = awt_nets::load(&current, a.arch.as_ref(), DType::F32, dev)?.net;
    awt_nets::save(&net, &a.out)?;
    crate::output::report_pruned(&net, &a.out)
}

/// Everything that shapes IMP-AT's rounds, as text: the settings and the initialisation's bytes.
/// With `legacy`, the initialisation as older builds hashed it (to continue their rounds).
fn imp_identity(a: &PruneArgs, legacy: bool) -> Result<String> {
    let model = std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let model_hash =
        if legacy { crate::output::legacy_text_hash(&model) } else { crate::output::model_hash(&a.model, &model)? };
    Ok(format!(
        "model={}\ndensity={}\nallocation={}\noutput_layer={}\nimp_rounds={}\nimp_epochs={}\neps={}\nattack_steps={}\nstep_size={:?}\nseed={}\ntrain_limit={:?}\ndata={}\nvalidation={:?}\n",
        model_hash,
        a.density,
        value_name(&a.allocation),
        value_name(&a.output_layer),
        a.imp_rounds,
        a.imp_epochs,
        a.eps,
        a.attack_steps,
        a.step_size,
        a.seed,
        a.train_limit,
        a.data.name,
        a.data.validation,
    ))
}

/// Opens IMP-AT's work folder: a new one records the settings; an existing one continues only if
/// it was made by the same settings and initialisation, else the command stops naming what differs
/// (rounds of another run must never be built on).
fn imp_work_folder(a: &PruneArgs, work: &Path) -> Result<()> {
    let identity = imp_identity(a, false)?;
    let file = work.join("settings.txt");
    if work.exists() {
        let had = std::fs::read_to_string(&file).unwrap_or_default();
        // Rounds an older build made record the initialisation by its legacy hash: the same rounds,
        // recorded anew.
        if had == imp_identity(a, true)? {
            return awt_base::write_atomic(&file, identity.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()));
        }
        if had != identity {
            let differs: Vec<&str> = identity
                .lines()
                .filter(|l| !had.lines().any(|h| h == *l))
                .map(|l| l.split('=').next().unwrap_or(l))
                .collect();
            bail!(
                "{} holds IMP rounds made with other settings ({}): remove it to start afresh, or choose another --out",
                work.display(),
                if had.is_empty() {
                    "no settings recorded".to_string()
                } else {
                    format!("{} differ", differs.join(", "))
                }
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    awt_base::write_atomic(&file, identity.as_bytes()).with_context(|| format!("cannot write {}", file.display()))
}

/// The training of IMP round `r` from `start` (the initialisation, or the previous round's ticket):
/// PGD-AT with --eps and --attack-steps, Adam 1e-3, batch 128, --imp-epochs epochs.
fn imp_round(a: &PruneArgs, start: &Path, ticket: bool, dir: &Path) -> Result<crate::train_args::TrainArgs> {
    let mut t = crate::train_args::TrainArgs::with_defaults(dir)?;
    if ticket {
        t.ticket = Some(start.to_path_buf());
    } else {
        t.init = Some(start.to_path_buf());
    }
    t.data = a.data.clone();
    t.adv = Adv::Pgd;
    t.eps = a.eps;
    t.steps = a.attack_steps;
    t.step_size = a.step_size;
    t.epochs = a.imp_epochs;
    t.opt = Opt::Adam;
    t.lr = 1e-3;
    t.eval_n = 200;
    t.eval_steps = 10;
    t.seed = a.seed;
    t.train_limit = a.train_limit;
    t.quiet = true;
    t.resume = dir.join(layout::STATE).exists();
    Ok(t)
}

pub(crate) fn run_prune(a: PruneArgs, dev: &Device) -> Result<()> {
    let mut inputs = vec![("--model", a.model.as_path())];
    if let Some(r) = &a.rewind {
        inputs.push(("--rewind", r.as_path()));
    }
    inputs.extend(a.layer_densities_from.as_deref().map(|p| ("--layer-densities-from", p)));
    let (imp_work, hydra_work) = (crate::files::beside(&a.out, "imp"), crate::files::beside(&a.out, "hydra"));
    let _owned = crate::files::own("--out", &a.out, crate::files::Kind::MODEL, &[&imp_work, &hydra_work], &inputs)?;
    if a.batch == 0 {
        bail!("--batch must be ≥ 1 (examples scored by SNIP and GraSP)");
    }
    // What only a mask at initialisation takes (the methods named from the run contract).
    let after_training = a.rewind.is_some() || matches!(a.method.0, Method::ImpAt | Method::Hydra);
    for (flag, given) in [
        ("--rescale", a.rescale != RescaleArg::None),
        ("--shuffle", a.shuffle != ShuffleArg::None),
        ("--layer-densities-from", a.layer_densities_from.is_some()),
    ] {
        if given && after_training {
            bail!(
                "{flag} applies to masks at initialisation ({}), not to --rewind, hydra or imp-at",
                Method::names_by(TicketRecipe::MaskAtInit).join(", ")
            );
        }
    }
    let what = if a.rewind.is_some() { "an IMP round (--rewind)".into() } else { value_name(&a.method) };
    crate::provenance::warn_on_training(&a.model, &what, a.rewind.is_some() || a.method.0 == Method::Hydra);
    if let Some(r) = a.rewind.clone() {
        return run_rewind(&a, &r, dev);
    }
    match a.method.0 {
        Method::ImpAt => return run_imp(&a, dev),
        Method::Hydra => return run_hydra(&a, dev),
        _ => {}
    }
    let mut net = awt_nets::load(&a.model, a.arch.as_ref(), DType::F32, dev)?.net;
    if !net.masks().is_empty() {
        bail!("{}: already holds masks; prune a dense initialisation", a.model.display());
    }
    let mut masks = prune_masks(&net, &a)?;
    if a.shuffle == ShuffleArg::Layer {
        masks = awt_prune::shuffle_within_layers(&masks, a.seed)?;
        net.meta.insert("shuffle".into(), value_name(&a.shuffle));
    }
    for (k, m) in &masks {
        net.set_mask(k, m)?;
    }
    if a.rescale == RescaleArg::UnitNorm {
        // Before the masks zero the pruned weights: each unit's dense norm is the target.
        for (k, v) in net.weights() {
            if let Some(m) = masks.get(k) {
                v.set(&awt_prune::rescale_kept(v.as_tensor(), m)?)?;
            }
        }
        net.meta.insert("rescale".into(), value_name(&a.rescale));
    }
    net.apply_masks()?;
    net.meta.insert("method".into(), value_name(&a.method));
    net.meta.insert("density".into(), a.density.to_string());
    match &a.layer_densities_from {
        Some(p) => {
            let counts = awt_prune::kept_counts(&masks)?;
            net.meta.insert("allocation".into(), "counts".into());
            net.meta.insert("layer_keep".into(), awt_prune::counts_text(&counts));
            net.meta.insert("layer_densities_from".into(), p.display().to_string());
        }
        None => {
            net.meta.insert("allocation".into(), value_name(&a.allocation));
        }
    }
    if a.output_layer == OutputLayerArg::Dense {
        net.meta.insert("output_layer".into(), "dense".into());
    }
    if a.method.0 == Method::Grasp {
        net.meta.insert("grasp_temperature".into(), awt_prune::scores::GRASP_TEMPERATURE.to_string());
    }
    net.meta.insert("prune_seed".into(), a.seed.to_string());
    net.meta.insert("git_commit".into(), git_commit().into());
    awt_nets::save(&net, &a.out)?;
    crate::output::report_pruned(&net, &a.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awt_nets::Init;

    /// `awt prune --method grasp` scores GraSP's tempered loss in f64, whatever the net's dtype:
    /// the library's GraSP on that loss, and not the one of the raw logits.
    #[test]
    fn grasp_scores_the_tempered_loss_in_f64() {
        let dev = Device::Cpu;
        let net = Net::init(&Arch::Mlp(vec![6, 5, 3]), Init::KaimingUniform, 3, DType::F32, &dev).unwrap();
        let x =
            Tensor::from_vec((0..48).map(|i| (i as f32 * 0.37).sin().abs()).collect::<Vec<_>>(), (8, 6), &dev).unwrap();
        let y = Tensor::from_vec((0..8u32).map(|i| i % 3).collect::<Vec<_>>(), 8, &dev).unwrap();
        let ours = grasp_scores(&net, &x, &y).unwrap();
        let (net64, x64) = (net.to_dtype(DType::F64).unwrap(), x.to_dtype(DType::F64).unwrap());
        let vars: BTreeMap<String, Var> = net64.weights().map(|(k, v)| (k.clone(), v.clone())).collect();
        let at = |t: f64| scores::grasp(&|| ce(&net64, &x64, &y, t), &vars, 1e-5).unwrap();
        let flat = |s: &scores::Scores| -> Vec<f64> {
            s.values().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
        };
        assert_eq!(flat(&ours), flat(&at(scores::GRASP_TEMPERATURE)));
        assert_ne!(flat(&ours), flat(&at(1.0)));
        assert!(ours.values().all(|t| t.dtype() == DType::F64));
    }

    /// HYDRA's attack takes `--step-size` when given (it ignored it before), else 0.25 ε.
    #[test]
    fn hydra_takes_the_given_step_size() {
        #[derive(clap::Parser)]
        struct Prune {
            #[command(flatten)]
            a: PruneArgs,
        }
        let parse = |extra: &[&str]| {
            let argv =
                ["prune", "--method", "hydra", "--density", "0.05", "--model", "m", "--eps", "0.2", "--out", "o"];
            attack_step(&<Prune as clap::Parser>::try_parse_from(argv.iter().chain(extra)).unwrap().a)
        };
        assert_eq!(parse(&["--step-size", "0.04"]), 0.04);
        assert_eq!(parse(&[]), 0.25 * 0.2);
    }
}
