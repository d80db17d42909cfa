//! Subcommands and their flags.

use std::path::{Path, PathBuf};

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
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
pub(crate) enum DataCmd {
    /// List every dataset with its location (or why it was not found), sizes and checksum status.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also parse each dataset found and verify every checksum (slower).
        #[arg(long)]
        verify: bool,
    },
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
    let _owned = crate::files::own("--out", out, crate::files::Kind::MODEL, &[], &[])?;
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

/// What `awt inspect --json` writes.
const MASK_REPORT: crate::files::Kind =
    crate::files::Kind::json::<awt_runs::records::MaskReport>("a mask report awt inspect wrote");

/// `awt inspect`: per tensor its shape, size and density, and for each masked weight the units its
/// mask cuts off (outputs with no kept incoming weight, inputs with no kept outgoing one); the last
/// layer's cut-off outputs are classes the network can only reach through their bias.
fn inspect(model: &Path, arch: Option<&Arch>, json: Option<&Path>) -> Result<()> {
    let _owned = json.map(|j| crate::files::own("--json", j, MASK_REPORT, &[], &[("MODEL", model)])).transpose()?;
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
