//! Subcommands and their flags.

use std::path::{Path, PathBuf};

use crate::args::value_name;
use anyhow::{Context, Result, bail};
use awt_data::{LoadOptions, REGISTRY};
use awt_nets::{Arch, Init, Net};
use awt_runs::records::{MaskLayer, MaskReport};
use candle_core::{DType, Device};
use clap::{Parser, Subcommand};

use crate::output::{config_hash, git_commit, say};

/// awt: adversarially robust sparse networks (AWT, NTK, attacks) on candle.
#[derive(Parser)]
#[command(name = "awt", version, about)]
pub(crate) struct Cli {
    /// Where to compute: cpu (default), cuda or cuda:N (a binary built with `cargo xtask
    /// gpu-build`), or auto (CUDA device 0 when there is one, else the CPU). Commands that only
    /// read or write files (data, init, inspect) compute on the CPU whatever it says.
    #[arg(long, global = true, default_value = "cpu", value_name = "cpu|cuda[:N]|auto")]
    device: awt_runs::DeviceSpec,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Datasets: where each was found and whether its checksums hold.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Initialise a network from a seed and save it as safetensors.
    Init {
        /// lenet-300-100, lenet5-caffe, conv4 or mlp-<in>-...-<classes>.
        #[allow(rustdoc::invalid_html_tags)] // clap's help text, where the angle brackets are meant
        #[arg(long)]
        arch: Arch,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// kaiming-uniform (PyTorch's default), glorot-normal, or ntt (Glorot-normal weights,
        /// N(0, 0.01²) biases, as NTT's code).
        #[arg(long, default_value = "kaiming-uniform")]
        init: Init,
        /// Standardise inputs inside the network by this dataset's training-set mean and std
        /// (per channel), as NTT's recipe does; attacks still work in pixel units.
        #[arg(long, value_name = "DATASET")]
        standardize: Option<String>,
        /// Where to look for the --standardize dataset first.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With --standardize: the statistics leave out the last N training images (the
        /// validation split of `--validation N` in the other commands).
        #[arg(long, value_name = "N", requires = "standardize")]
        validation: Option<usize>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Clean and robust accuracy of a checkpoint (FGSM, PGD, APGD-CE/DLR, or the worst case).
    #[command(allow_negative_numbers = true)]
    Eval(Box<crate::eval::EvalArgs>),
    /// The empirical NTK of a checkpoint on clean or adversarial inputs.
    #[command(allow_negative_numbers = true)]
    Ntk(Box<crate::ntk::NtkArgs>),
    /// Adversarially train a network (dense, or sparse with a fixed mask) as a resumable run.
    #[command(args_override_self = true, allow_negative_numbers = true)]
    Train(Box<crate::train_args::TrainArgs>),
    /// Prune: random, magnitude, snip, grasp, synflow at init; hydra or IMP rounds (--rewind) after training.
    #[command(allow_negative_numbers = true)]
    Prune(Box<crate::prune::PruneArgs>),
    /// Search a ticket at initialisation by kernel and output matching (awt or ntt).
    #[command(allow_negative_numbers = true)]
    Ticket(Box<crate::ticket::TicketArgs>),
    /// Kernel dynamics of a sparse net against the dense net trained with the same seed, per epoch.
    #[command(allow_negative_numbers = true)]
    Dynamics(Box<crate::dynamics::DynamicsArgs>),
    /// Does --device compute what the CPU computes (logits, gradients, PGD-20, the NTK, a search
    /// step), and how fast (the rows of docs/performance.md)? With --device cpu: a dry run on the
    /// device-generic path.
    CheckDevice(Box<crate::device_check::CheckArgs>),
    /// The summation order of this CPU's matrix products (gemm's k-blocks and small-product lanes):
    /// two machines that print the same line can repeat each other's runs bit for bit
    /// (docs/reproducing.md, "Across CPUs").
    Numerics,
    /// Show a checkpoint's architecture, parameters and density per layer, and metadata.
    Inspect {
        model: PathBuf,
        /// Architecture of a foreign (PyTorch) state dict without awt metadata.
        #[arg(long)]
        arch: Option<Arch>,
        /// Also write the per-layer densities and cut-off units as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// List every dataset with its location (or why it was not found), sizes and checksum status.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also parse each dataset found and verify every checksum (slower).
        #[arg(long)]
        verify: bool,
    },
}

/// The value `awt <command>` has for `selector` (typed, so a default counts as given): what
/// decides which of its flags are read (`awt_runs::reads`).
fn selector_value(cmd: &Cmd, selector: &str) -> Option<String> {
    Some(match (cmd, selector) {
        (Cmd::Prune(a), "--method") => a.method.0.name().to_string(),
        (Cmd::Ticket(a), "--method") => value_name(&a.method),
        (Cmd::Train(a), "--adv") => value_name(&a.adv),
        (Cmd::Train(a), "--opt") => value_name(&a.opt),
        (Cmd::Train(a), "--schedule") => value_name(&a.schedule),
        (Cmd::Eval(a), "--attack") => value_name(&a.attack),
        _ => return None,
    })
}

/// Refuses a flag that the command's choice does not read (`awt_runs::reads`), naming the flag
/// and the choices that do: one typed on the command line (`explicit`, the arguments as given), or
/// one a `--config` file set to other than its default (a run's own `config.toml` records every
/// setting, read or not, at its default where the run did not set it).
pub(crate) fn refuse_unread_flags(m: &clap::ArgMatches, cli: &Cli, explicit: &[String]) -> Result<()> {
    use clap::CommandFactory;
    let Some((name, sub)) = m.subcommand() else { return Ok(()) };
    let typed =
        |flag: &str| explicit.iter().any(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')));
    let config = explicit.iter().position(|a| a == "--config").and_then(|i| explicit.get(i + 1));
    let command = Cli::command();
    for r in awt_runs::reads::of(name) {
        let id = r.flag.trim_start_matches("--").replace('-', "_");
        if sub.value_source(&id) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let from_config = !typed(r.flag);
        if from_config {
            let arg = command.find_subcommand(name).and_then(|c| c.get_arguments().find(|a| a.get_id() == id.as_str()));
            let default: Vec<&std::ffi::OsStr> =
                arg.map(|a| a.get_default_values().iter().map(|v| v.as_os_str()).collect()).unwrap_or_default();
            let given: Vec<&std::ffi::OsStr> = sub.get_raw(&id).map(|v| v.collect()).unwrap_or_default();
            if same_values(&given, &default) {
                continue;
            }
        }
        let value = selector_value(&cli.cmd, r.selector)
            .with_context(|| format!("awt {name}: no value for {} (awt_runs::reads names it)", r.selector))?;
        if let Some(why) = awt_runs::reads::unread(name, r.flag, &value) {
            match (from_config, config) {
                (true, Some(path)) => bail!("--config {path}: {why}"),
                _ => bail!(why),
            }
        }
    }
    Ok(())
}

/// A flag's values equal its defaults (numbers compared as numbers: `0.10` is `0.1`; a switch's
/// `true` against its default `false` differs).
fn same_values(given: &[&std::ffi::OsStr], default: &[&std::ffi::OsStr]) -> bool {
    let num = |v: &std::ffi::OsStr| v.to_str().and_then(|s| s.parse::<f64>().ok());
    given.len() == default.len()
        && given.iter().zip(default).all(|(g, d)| g == d || matches!((num(g), num(d)), (Some(a), Some(b)) if a == b))
}

/// Parses `awt`'s arguments as `main` does: `--config FILE` expanded, clap's parse, then
/// [`refuse_unread_flags`]. The outer error is clap's (a usage error); the inner one is ours.
pub(crate) fn parse_args(args: Vec<String>) -> std::result::Result<Result<Cli>, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let expanded = match crate::train_args::expand_config(args.clone()) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let m = Cli::command().try_get_matches_from(expanded)?;
    let cli = Cli::from_arg_matches(&m)?;
    Ok(refuse_unread_flags(&m, &cli, &args).map(|()| cli))
}

pub(crate) fn run(cli: Cli) -> Result<()> {
    let dev = || crate::output::open_device(cli.device);
    match cli.cmd {
        Cmd::Data { cmd: DataCmd::List { data_dir, verify } } => data_list(data_dir, verify),
        Cmd::Init { arch, seed, init, standardize, data_dir, validation, out } => {
            let data = |name| crate::args::DataArgs { validation, ..crate::args::DataArgs::named(name, data_dir) };
            let norm = standardize.map(data).map(|d| -> Result<_> {
                let ds = d.load().context("--standardize")?;
                let (mean, std) = ds.train.channel_stats()?;
                Ok(awt_nets::InputNorm { mean, std })
            });
            init_cmd(&arch, seed, init, norm.transpose()?, &out)
        }
        Cmd::Inspect { model, arch, json } => inspect(&model, arch.as_ref(), json.as_deref()),
        Cmd::Numerics => {
            say!("gemm on this CPU: {}", awt_base::numerics::gemm_order());
            Ok(())
        }
        Cmd::Eval(a) => crate::eval::run(*a, &dev()?),
        Cmd::Ntk(a) => crate::ntk::run(*a, &dev()?),
        Cmd::Dynamics(a) => crate::dynamics::run(*a, &dev()?),
        Cmd::Train(a) => crate::train::run(*a, &dev()?),
        Cmd::Prune(a) => crate::prune::run_prune(*a, &dev()?),
        Cmd::Ticket(a) => crate::ticket::run_ticket(*a, &dev()?),
        Cmd::CheckDevice(a) => crate::device_check::run(*a, &dev()?),
    }
}

fn data_list(data_dir: Option<PathBuf>, verify: bool) -> Result<()> {
    let opts = LoadOptions { offline: true, ..LoadOptions::from_env(data_dir) };
    let opts_net = LoadOptions::from_env(opts.data_dir.as_ref().map(|d| d.0.clone()));
    say!("{:<20} {:<10} {:<58} details", "dataset", "status", "location");
    let mut notes = Vec::new();
    let mut unusable = Vec::new();
    for spec in REGISTRY {
        // Listing never downloads: it reports what is here.
        match awt_data::locate(spec.name, &opts) {
            Ok(loc) => {
                let details = if verify || matches!(loc, awt_data::Location::Embedded) {
                    match awt_data::load(spec.name, &opts) {
                        Ok(ds) => {
                            let sums: Vec<&str> = ds.provenance.files.iter().map(|f| f.status.as_str()).collect();
                            let all = if sums.iter().all(|s| *s == "verified") {
                                "all checksums verified".to_string()
                            } else {
                                sums.join(", ")
                            };
                            format!(
                                "train {} / test {} images {:?}; {all}",
                                ds.train.len(),
                                ds.test.len(),
                                ds.train.shape
                            )
                        }
                        Err(e) => {
                            unusable.push(spec.name);
                            format!("UNUSABLE: {}", crate::output::chain(&e))
                        }
                    }
                } else {
                    "present (run with --verify to parse and check sums)".to_string()
                };
                say!("{:<20} {:<10} {:<58} {details}", spec.name, "found", loc.to_string());
            }
            Err(e) => {
                let dl = if opts_net.offline || spec.hf.is_none() {
                    ""
                } else {
                    "; other awt commands will try a hub download"
                };
                say!("{:<20} {:<10} {:<58} to get it: {}{dl}", spec.name, "missing", "-", spec.how_to_get);
                notes.push(crate::output::chain(&e));
            }
        }
    }
    for n in notes {
        say!("\n{n}");
    }
    if !unusable.is_empty() {
        bail!("found but unusable: {} (see the table above)", unusable.join(", "));
    }
    Ok(())
}

fn init_cmd(arch: &Arch, seed: u64, init: Init, norm: Option<awt_nets::InputNorm>, out: &Path) -> Result<()> {
    let mut net = Net::init(arch, init, seed, DType::F32, &Device::Cpu)?;
    net.set_input_norm(norm).context("--standardize")?;
    net.meta.insert("git_commit".into(), git_commit().into());
    let mut canonical = format!("init arch={arch} seed={seed} init={}", init.name());
    if let Some(n) = net.input_norm() {
        canonical += &format!(" input_mean={:?} input_std={:?}", n.mean, n.std);
    }
    net.meta.insert("config_hash".into(), config_hash(&canonical));
    awt_nets::save(&net, out)?;
    let (p, _) = net.counts();
    say!("wrote {} ({arch}, seed {seed}, {}, {p} parameters)", out.display(), init.name());
    Ok(())
}

/// `awt inspect`: per tensor its shape, size and density, and for each masked weight the units its
/// mask cuts off (outputs with no kept incoming weight, inputs with no kept outgoing one); the last
/// layer's cut-off outputs are classes the network can only reach through their bias.
fn inspect(model: &Path, arch: Option<&Arch>, json: Option<&Path>) -> Result<()> {
    let _owned = json.map(|j| crate::files::own("--json", j, &[], &[("MODEL", model)])).transpose()?;
    let loaded = awt_nets::load(model, arch, DType::F32, &Device::Cpu)?;
    let net = loaded.net;
    say!(
        "{}: {}{}",
        model.display(),
        net.arch(),
        if loaded.foreign { " (foreign state dict, no awt metadata)" } else { "" }
    );
    say!("{:<16} {:>18} {:>10} {:>10} {:>22}", "tensor", "shape", "params", "density", "cut off: outputs/inputs");
    let dens = net.densities().context("computing densities")?;
    let mut kept = 0.0;
    let mut layers = Vec::new();
    for (name, v) in net.params() {
        let d = dens.get(name).copied();
        if let Some(d) = d {
            kept += d * v.elem_count() as f64;
        }
        let cut = net.masks().get(name).map(awt_prune::cut_off).transpose()?;
        say!(
            "{:<16} {:>18} {:>10} {:>10} {:>22}",
            name,
            format!("{:?}", v.dims()),
            v.elem_count(),
            d.map(|d| format!("{d:.4}")).unwrap_or_else(|| "(bias)".into()),
            cut.as_ref()
                .map(|c| format!("{} / {}", c.outputs_without_input.len(), c.inputs_without_output.len()))
                .unwrap_or_default()
        );
        if let Some(d) = d {
            let ids = |v: &[usize]| v.iter().map(|&i| i as u64).collect::<Vec<u64>>();
            layers.push(MaskLayer {
                density: d,
                inputs_without_output: cut.as_ref().map(|c| ids(&c.inputs_without_output)),
                name: name.clone(),
                outputs_without_input: cut.as_ref().map(|c| ids(&c.outputs_without_input)),
                shape: ids(v.dims()),
            });
        }
    }
    let (all, weights) = net.counts();
    say!("total {all} parameters, {weights} maskable weights, overall weight density {:.4}", kept / weights as f64);
    // The classifier is the last weighted layer in forward order.
    let last = net.arch().param_shapes().into_iter().map(|(n, _)| n).rfind(|n| n.ends_with(".weight"));
    let dead_classes = match last.as_ref().and_then(|n| net.masks().get(n)) {
        Some(m) => Some(awt_prune::cut_off(m)?.outputs_without_input),
        None => None,
    };
    if let Some(c) = dead_classes.as_ref().filter(|c| !c.is_empty()) {
        say!("classes without any kept incoming weight (reachable only through their bias): {c:?}");
    }
    if !net.meta.is_empty() {
        say!("metadata:");
        for (k, v) in &net.meta {
            say!("  {k} = {v}");
        }
    }
    if net.masks().is_empty() && net.meta.contains_key("method") {
        bail!("{}: metadata names a pruning method but the file holds no masks", model.display());
    }
    if let Some(j) = json {
        let v = MaskReport {
            arch: net.arch().to_string(),
            classes_without_input: dead_classes.map(|c| c.into_iter().map(|i| i as u64).collect()),
            density: kept / weights as f64,
            layers,
            meta: net.meta.clone(),
            model: model.display().to_string(),
            parameters: all as u64,
            weights: weights as u64,
        };
        crate::output::write_json(j, &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod contract_tests {
    use awt_runs::argv::Argv;
    use awt_runs::settings::{Eval, Hydra, Imp, Prune, Search, TicketJob, Train};
    use awt_runs::{Density, Method};

    use super::Cmd;
    use crate::args::value_name;

    /// As `main` parses, unread-flag check included: xtask's command lines pass only flags that
    /// their method reads.
    fn parse(a: Argv) -> Cmd {
        let argv = std::iter::once("awt".to_string()).chain(a.into_vec()).collect();
        super::parse_args(argv).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")).cmd
    }

    fn job(method: Method) -> TicketJob<'static> {
        let density = Density::new(0.05).unwrap();
        TicketJob { method, density, model: "m.safetensors", data: "fashion-mnist", eps: 0.1, seed: 7, out: "t" }
    }

    /// Every command line the run contract builds (`awt_runs::settings`, what xtask runs) parses
    /// with the binary's own flags to the settings it was built from: the flag names, their values'
    /// spelling and their meaning agree on both sides.
    #[test]
    fn argv_from_the_contract_parses_to_the_same_settings() {
        let train = Train {
            adv: "pgd".into(),
            eps: 0.1,
            steps: 10,
            step_size: 0.025,
            epochs: 30,
            batch: 128,
            opt: "adam".into(),
            lr: 0.001,
            train_limit: Some(5000),
            eval_n: 1000,
            eval_steps: 20,
            wd: Some(5e-4),
            schedule: Some("cosine".into()),
            track_kernel: None,
        };
        let Cmd::Train(t) =
            parse(Argv::new("train").flag("--init", "i").then(train.flags("fashion-mnist", 7, 3)).flag("--out", "o"))
        else {
            panic!("not train")
        };
        assert_eq!(
            (t.eps, t.steps, t.step_size, t.epochs, t.batch, t.lr, t.train_limit, t.eval_n, t.eval_steps, t.wd, t.seed),
            (0.1, 10, Some(0.025), 3, 128, 0.001, Some(5000), 1000, 20, 5e-4, 7)
        );
        assert_eq!(
            (value_name(&t.adv), value_name(&t.opt), value_name(&t.schedule)),
            ("pgd".into(), "adam".into(), "cosine".into())
        );
        assert!(t.quiet && t.data.name == "fashion-mnist");
        // Natural training runs no attack: its line has none of the attack's flags (they would be refused).
        let natural = Train { adv: "none".into(), ..train.clone() }.flags("fashion-mnist", 7, 3);
        assert!(natural.value("--steps").is_none() && natural.value("--step-size").is_none());
        let Cmd::Train(n) = parse(Argv::new("train").flag("--init", "i").then(natural).flag("--out", "o")) else {
            panic!("not train")
        };
        assert_eq!((value_name(&n.adv), n.eps, n.epochs), ("none".into(), 0.1, 3));

        let s = Search {
            steps: 300,
            batch: 64,
            lr: 5e-4,
            lambda_ker: 1e-3,
            lambda_l2: 1e-4,
            mask_every: 100,
            attack_steps: 10,
        };
        let Cmd::Ticket(k) = parse(s.ticket(&job(Method::Awt))) else { panic!("not ticket") };
        assert_eq!(
            (
                k.steps,
                k.batch,
                k.lr,
                k.lambda_ker,
                k.lambda_l2,
                k.mask_every,
                k.eps,
                k.attack_steps,
                k.seed,
                k.density.get()
            ),
            (Some(300), 64, 5e-4, 1e-3, 1e-4, 100, 0.1, 10, 7, 0.05)
        );
        assert!(value_name(&k.method) == "awt" && k.quiet && k.model.to_str() == Some("m.safetensors"));
        // NTT runs no attack: its command line carries none of the attack's flags (they would be refused).
        let ntt = s.ticket(&job(Method::Ntt));
        assert!(ntt.value("--eps").is_none() && ntt.value("--attack-steps").is_none());
        let Cmd::Ticket(n) = parse(ntt) else { panic!("not ticket") };
        assert_eq!((value_name(&n.method), n.steps, n.lambda_ker, n.seed), ("ntt".into(), Some(300), 1e-3, 7));

        let p = Prune { batch: 256, rounds: 100, allocation: [("snip".to_string(), "global".to_string())].into() };
        let Cmd::Prune(m) = parse(p.mask(&job(Method::Snip))) else { panic!("not prune") };
        assert_eq!((m.method.0, m.batch, m.rounds, m.density.get(), m.seed), (Method::Snip, 256, 100, 0.05, 7));
        assert_eq!(value_name(&m.allocation), "global");

        let Cmd::Prune(i) =
            parse(Imp { rounds: 3, epochs: 2, final_epochs: None }.rounds(&job(Method::ImpAt), 2, &train))
        else {
            panic!("not prune")
        };
        assert_eq!(
            (i.method.0, i.imp_rounds, i.imp_epochs, i.eps, i.attack_steps, i.step_size, i.train_limit),
            (Method::ImpAt, 3, 2, 0.1, 10, Some(0.025), Some(5000))
        );

        let h = Hydra { pretrain_epochs: 5, epochs: 4, lr: 0.1, finetune_epochs: None };
        let Cmd::Prune(y) = parse(h.scores(&job(Method::Hydra), 4, &train)) else { panic!("not prune") };
        assert_eq!(
            (y.method.0, y.hydra_epochs, y.hydra_lr, y.eps, y.attack_steps, y.step_size, y.train_limit),
            (Method::Hydra, 4, 0.1, 0.1, 10, Some(0.025), Some(5000))
        );

        let e = Eval {
            attack: None,
            autoattack: true,
            autoattack_n: Some(500),
            n: 10_000,
            steps: 20,
            apgd_steps: 100,
            split: Some("validation".into()),
        };
        let worst = e.worst("m", "fashion-mnist", 0.1, 7, "e.json");
        let Cmd::Eval(w) = parse(worst.clone()) else { panic!("not eval") };
        assert_eq!((w.limit, w.eps, w.steps, w.apgd_steps, w.seed), (Some(10_000), 0.1, 20, 100, 7));
        assert_eq!((value_name(&w.attack), value_name(&w.split)), ("worst".into(), "validation".into()));
        let Cmd::Eval(aa) = parse(e.autoattack(&worst, "aa.json").unwrap()) else { panic!("not eval") };
        assert_eq!((value_name(&aa.attack), aa.limit), ("autoattack".into(), Some(500)));
        assert_eq!(aa.json.as_deref().and_then(|p| p.to_str()), Some("aa.json"));
        assert_eq!(aa.apgd_steps, 100);
        let clean = Eval { attack: Some("none".into()), autoattack: false, ..e };
        let Cmd::Eval(c) = parse(clean.worst("m", "fashion-mnist", 0.1, 7, "c.json")) else { panic!("not eval") };
        assert_eq!((value_name(&c.attack), c.limit), ("none".into(), Some(10_000)));
    }

    /// Every flag and selector of `awt_runs::reads` is a flag of its command, with a value the
    /// check can read (a wrong spelling there would check nothing).
    #[test]
    fn every_listed_flag_and_selector_is_a_flag_of_its_command() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        for r in awt_runs::reads::READS {
            let sub = cli.find_subcommand(r.command).unwrap_or_else(|| panic!("no awt {}", r.command));
            for flag in [r.flag, r.selector] {
                let long = flag.trim_start_matches("--");
                let arg = sub.get_arguments().find(|a| a.get_long() == Some(long));
                let arg = arg.unwrap_or_else(|| panic!("awt {} has no {flag}", r.command));
                assert_eq!(arg.get_id().as_str(), long.replace('-', "_"), "awt {} {flag}: the check's id", r.command);
            }
            for value in r.readers {
                let argv = match r.command {
                    "prune" => vec!["prune", "--method", value, "--density", "0.5", "--model", "m", "--out", "o"],
                    "ticket" => vec!["ticket", "--method", value, "--density", "0.5", "--model", "m", "--out", "o"],
                    "train" => vec!["train", r.selector, value, "--out", "o"],
                    _ => vec![r.command, r.selector, value, "--model", "m"],
                };
                let m = cli.clone().try_get_matches_from(std::iter::once("awt").chain(argv)).expect("parses");
                let parsed = <super::Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
                assert_eq!(super::selector_value(&parsed.cmd, r.selector).as_deref(), Some(*value), "{r:?}");
            }
        }
    }
}
