//! Experiment grids as data: `experiments/<preset>.toml`, read into typed settings once (a typo or
//! a wrong type is an error naming the file and the key) and kept as TOML for the run hashes.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use awt_runs::{Density, Method, TicketRecipe, Variant};

// Each command's settings are the run contract's (`awt_runs::settings`), with the command lines they give.
pub(crate) use awt_runs::settings::{
    Dynamics as DynamicsSpec, Eval as EvalSpec, Hydra as HydraSpec, Imp as ImpSpec, Init as InitSpec,
    Prune as PruneSpec, Search as SearchSpec, Train as TrainSpec,
};

use crate::workspace::root;

/// A preset: which networks, methods, densities and seeds, and every setting of their commands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    pub name: String,
    pub description: String,
    /// The dataset, and the one used when it is not installed.
    pub data: String,
    pub fallback_data: String,
    pub archs: Vec<String>,
    pub methods: Vec<String>,
    pub densities: Vec<Density>,
    pub seeds: Vec<u64>,
    /// Hold the last this many training images out as a validation split (`awt --validation`):
    /// every step trains, searches and prunes on the rest, training's per-epoch evaluation uses it,
    /// and `[eval] split` says which split the final evaluation scores.
    #[serde(default)]
    pub validation: Option<usize>,
    /// The `[imp]` and `[hydra]` tables join the run hash of their methods' runs (study v2 presets;
    /// earlier presets left them out and keep their run names).
    #[serde(default)]
    pub hash_method_tables: bool,
    /// `dense`: every mask keeps the output layer whole, counted in the density (`awt prune` and
    /// `awt ticket --output-layer`); default `pruned`.
    #[serde(default)]
    pub output_layer: Option<String>,
    /// Record each finished run's small files in `results/<preset>/` (and skip what is there).
    #[serde(default)]
    pub record: bool,
    /// What is smaller than the paper's scale, in words (for the report).
    #[serde(default)]
    pub scaled_down: String,
    #[serde(default)]
    pub init: Option<InitSpec>,
    pub train: TrainSpec,
    pub search: SearchSpec,
    pub prune: PruneSpec,
    pub eval: EvalSpec,
    #[serde(default)]
    pub imp: Option<ImpSpec>,
    #[serde(default)]
    pub hydra: Option<HydraSpec>,
    /// Kernel dynamics of every sparse run against the dense run of its seed (`awt dynamics`).
    #[serde(default)]
    pub dynamics: Option<DynamicsSpec>,
    /// Variants of a search method, each a run per listed density and seed (`[[ablation]]`).
    #[serde(default, rename = "ablation")]
    pub ablations: Vec<Ablation>,
    /// Seeds beyond `seeds` for some of the methods only (`[[more_seeds]]`), where a comparison
    /// needs more seeds than the whole grid does.
    #[serde(default)]
    pub more_seeds: Vec<MoreSeeds>,
    /// NTT's and AWT's settings as a selection preset decided them (`[selected]`, docs/protocol.md
    /// §4): read from its records by the rules docs/selection.md renders, never copied by hand.
    #[serde(default)]
    pub selected: Option<Selected>,
    /// The TOML tables as written, for the run hashes (so a run's name changes exactly when a
    /// setting that shapes it does).
    #[serde(skip)]
    pub raw: toml::Table,
}

/// One ablation: a method with some flags of its ticket step changed (`awt ticket` for a search,
/// `awt prune` for a mask at initialisation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ablation {
    /// Short name; the runs are called `<method>-<name>`.
    pub name: String,
    /// A search (`ntt`, `awt`) or a mask at initialisation (`random`, `magnitude`, `snip`, `grasp`, `synflow`,
    /// `ntk-sap`).
    pub method: String,
    pub densities: Vec<Density>,
    pub seeds: Vec<u64>,
    /// Seeds added once the ablation beats its plain method: when `results/` records both at the
    /// first of `seeds` (same density, current configuration) and the ablation's headline robust accuracy
    /// (the worst case over the evaluation's attacks) is higher, these seeds join the grid.
    #[serde(default)]
    pub follow_up_seeds: Vec<u64>,
    /// Flags of the ticket step (without dashes) and their values, replacing the `[search]` or
    /// `[prune]` ones, those `awt_runs::Method::ablation_flags` allows.
    pub flags: toml::Table,
}

/// Where a final preset's NTT and AWT settings come from: for each search method and density, the
/// λ_ker `from` selected (§4.2) and the weights (transferred or rewound, §4.3) that `weights_from`
/// (default `from`) selected; the runs keep their plain names and carry the selected flags in their
/// settings (and so in their hashes). Planning fails, saying what is missing, until both decide.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selected {
    pub from: String,
    #[serde(default)]
    pub weights_from: Option<String>,
}

/// More seeds for some methods of the grid: the same runs as the grid's at those seeds (same
/// names and settings), for these methods only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoreSeeds {
    /// Methods of the grid's `methods`.
    pub methods: Vec<String>,
    /// Seeds not in the grid's `seeds`.
    pub seeds: Vec<u64>,
    /// Why these runs are there, in words (kept beside them in the preset).
    #[serde(default)]
    pub why: String,
}

/// The plain method a variant changes (`random` for `random-rescaled`); None for a method itself.
pub(crate) fn plain_of(v: &str) -> Option<&'static str> {
    v.parse::<Variant>().ok().filter(|v| v.ablation.is_some()).map(|v| v.method.name())
}

/// Reads and checks `experiments/<preset>.toml`.
pub(crate) fn load(preset: &str) -> Result<Spec> {
    let p = root().join("experiments").join(format!("{preset}.toml"));
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("no preset `{preset}`: cannot read {}", p.display()))?;
    parse(&text, &p, preset)
}

/// A preset's `text`, read from `p`, checked.
pub(crate) fn parse(text: &str, p: &Path, preset: &str) -> Result<Spec> {
    let raw: toml::Table = text.parse().with_context(|| format!("{}: not valid TOML", p.display()))?;
    let mut spec: Spec = toml::from_str(text).with_context(|| format!("{}", p.display()))?;
    spec.raw = raw;
    no_repeats(&spec, p)?;
    if spec.name != preset {
        bail!("{}: `name = \"{}\"` differs from the file's preset name `{preset}`", p.display(), spec.name);
    }
    check_methods(&spec, p)?;
    check_more_seeds(&spec, p)?;
    check_tables(&spec, p)?;
    Ok(spec)
}

/// No grid entry, ablation name or seed listed twice: a repeated entry would run once but count
/// twice (two "seeds" giving a zero-width interval).
fn no_repeats(spec: &Spec, p: &Path) -> Result<()> {
    fn repeated<T: PartialEq + std::fmt::Display>(v: &[T]) -> Option<&T> {
        v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)).map(|(_, x)| x)
    }
    for (key, dup) in [
        ("archs", repeated(&spec.archs).map(ToString::to_string)),
        ("methods", repeated(&spec.methods).map(ToString::to_string)),
        ("densities", repeated(&spec.densities).map(ToString::to_string)),
        ("seeds", repeated(&spec.seeds).map(ToString::to_string)),
    ] {
        if let Some(d) = dup {
            bail!("{}: `{key}` lists {d} twice", p.display());
        }
    }
    let labels: Vec<String> = spec.ablations.iter().map(|a| format!("{}-{}", a.method, a.name)).collect();
    if let Some(d) = repeated(&labels) {
        bail!("{}: two [[ablation]] tables are named {d}", p.display());
    }
    for ab in &spec.ablations {
        if let Some(d) = repeated(&ab.seeds).or(repeated(&ab.follow_up_seeds)) {
            bail!("{}: ablation `{}` lists seed {d} twice", p.display(), ab.name);
        }
    }
    let more: Vec<u64> = spec.more_seeds.iter().flat_map(|m| m.seeds.clone()).collect();
    if let Some(d) = repeated(&more) {
        bail!("{}: [[more_seeds]] lists seed {d} twice", p.display());
    }
    Ok(())
}

/// Every method is one, with the tables it needs; every ablation names a method, densities it can
/// have and only the flags its method takes.
fn check_methods(spec: &Spec, p: &Path) -> Result<()> {
    for m in &spec.methods {
        if let Err(e) = m.parse::<Method>() {
            bail!("{}: {e}", p.display());
        }
    }
    if spec.methods.iter().any(|m| m == "imp-at") && spec.imp.is_none() {
        bail!("{}: method imp-at needs an [imp] table", p.display());
    }
    for ab in &spec.ablations {
        let allowed = match ab.method.parse::<Method>() {
            Ok(m) => m.ablation_flags(),
            Err(_) => bail!(
                "{}: ablation `{}`: method must be a search (ntt, awt), a mask at initialisation ({}), imp-at, hydra or dense, not `{}`",
                p.display(),
                ab.name,
                masks_at_init().join(", "),
                ab.method
            ),
        };
        if ab.method == "dense" {
            if ab.densities != [Density::ONE] {
                bail!("{}: ablation `{}`: the dense net's densities are [1.0]", p.display(), ab.name);
            }
        } else if let Some(d) = ab.densities.iter().find(|d| **d == Density::ONE) {
            bail!("{}: ablation `{}`: density {d} is not in (0, 1)", p.display(), ab.name);
        }
        for k in ab.flags.keys() {
            if !allowed.contains(&k.as_str()) {
                bail!(
                    "{}: ablation `{}`: flag `{k}` of method {} is not one of {}",
                    p.display(),
                    ab.name,
                    ab.method,
                    allowed.join(", ")
                );
            }
        }
    }
    for ab in spec.ablations.iter().filter(|a| a.flags.contains_key("layers-from")) {
        let v = &ab.flags["layers-from"];
        let of = v.as_str().ok_or_else(|| anyhow::anyhow!("not a name")).and_then(|v| spec.mask_variant(v));
        match of {
            Err(e) => bail!("{}: ablation `{}`: layers-from = {v}: {e:#}", p.display(), ab.name),
            // The counts' mask is made by the variant's own command, which must not need counts too.
            Ok((_, flags)) if flags.iter().any(|(k, _)| k == "layers-from") => bail!(
                "{}: ablation `{}`: layers-from = {v}: that variant takes its layer counts from another (name the one it takes them from)",
                p.display(),
                ab.name
            ),
            Ok(_) if ab.flags.contains_key("allocation") => bail!(
                "{}: ablation `{}`: layers-from and allocation both say how the density is spread over layers; give one",
                p.display(),
                ab.name
            ),
            Ok(_) => {}
        }
    }
    if spec.methods.iter().any(|m| m == "hydra") && spec.hydra.is_none() {
        bail!("{}: method hydra needs a [hydra] table", p.display());
    }
    if let Some(h) = spec.hydra.as_ref().filter(|h| h.epochs < 2) {
        bail!(
            "{}: [hydra] epochs = {}: HYDRA's per-epoch cosine schedule (its code's) is 0 at the only epoch of 1, so \
             no score would move; use at least 2",
            p.display(),
            h.epochs
        );
    }
    Ok(())
}

/// `[[more_seeds]]` adds seeds the grid lacks, for methods it has (the dense one with `[dynamics]`).
fn check_more_seeds(spec: &Spec, p: &Path) -> Result<()> {
    for more in &spec.more_seeds {
        if let Some(m) = more.methods.iter().find(|m| !spec.methods.contains(m)) {
            bail!(
                "{}: [[more_seeds]]: method `{m}` is not one of the grid's methods ({})",
                p.display(),
                spec.methods.join(", ")
            );
        }
        if let Some(s) = more.seeds.iter().find(|s| spec.seeds.contains(s)) {
            bail!("{}: [[more_seeds]]: seed {s} is already one of the grid's seeds", p.display());
        }
        if more.methods.is_empty() || more.seeds.is_empty() {
            bail!("{}: [[more_seeds]] needs methods and seeds", p.display());
        }
        if spec.dynamics.is_some() && !more.methods.iter().any(|m| m == "dense") {
            bail!(
                "{}: [[more_seeds]]: with [dynamics] every run needs the dense run of its seed: list dense",
                p.display()
            );
        }
    }
    if spec.dynamics.is_some() && !spec.methods.iter().any(|m| m == "dense") {
        bail!("{}: [dynamics] compares each run with the dense run of its seed: list method dense", p.display());
    }
    Ok(())
}

/// The settings tables agree with each other: AutoAttack's subset, allocations, the output-layer
/// rule, the evaluated split.
fn check_tables(spec: &Spec, p: &Path) -> Result<()> {
    // An empty list is a grid with nothing to run; a zero count a step every run would fail at.
    for (key, empty) in [
        ("archs", spec.archs.is_empty()),
        ("methods", spec.methods.is_empty()),
        ("seeds", spec.seeds.is_empty()),
        ("densities", spec.densities.is_empty() && spec.methods.iter().any(|m| m != "dense")),
    ] {
        if empty {
            bail!("{}: `{key}` is empty: the grid would have no run", p.display());
        }
    }
    let (t, s) = (&spec.train, &spec.search);
    let counts = [
        ("[train] epochs", t.epochs),
        ("[train] batch", t.batch),
        ("[train] eval_n", t.eval_n),
        ("[search] steps", s.steps),
        ("[search] batch", s.batch),
        ("[eval] n", spec.eval.n),
    ];
    if let Some((key, _)) = counts.iter().find(|(_, v)| *v == 0) {
        bail!("{}: {key} = 0: it must be at least 1", p.display());
    }
    if let Some(k) = spec.eval.autoattack_n {
        if !spec.eval.autoattack {
            bail!("{}: [eval] autoattack_n is set but autoattack is not", p.display());
        }
        if k == 0 || k > spec.eval.n {
            bail!("{}: [eval] autoattack_n = {k} must be in 1..={} (n)", p.display(), spec.eval.n);
        }
    }
    if let Some(m) = spec.prune.allocation.keys().find(|m| !masks_at_init().contains(&m.as_str())) {
        bail!(
            "{}: [prune] allocation: `{m}` is not a mask at initialisation ({})",
            p.display(),
            masks_at_init().join(", ")
        );
    }
    if let Some(o) = spec.output_layer.as_deref().filter(|o| !["dense", "pruned"].contains(o)) {
        bail!("{}: output_layer = \"{o}\": expected \"dense\" or \"pruned\"", p.display());
    }
    match (spec.eval.split.as_deref(), spec.validation) {
        (None | Some("test"), _) | (Some("validation"), Some(_)) => {}
        (Some("validation"), None) => {
            bail!(
                "{}: [eval] split = \"validation\" needs `validation = N` (the training images to hold out)",
                p.display()
            )
        }
        (Some(other), _) => bail!("{}: [eval] split = \"{other}\": expected \"test\" or \"validation\"", p.display()),
    }
    Ok(())
}

/// Every method a preset may list, in the order reports show them (`awt_runs::Method::ALL`).
pub(crate) const METHODS: [&str; Method::ALL.len()] = {
    let mut out = [""; Method::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = Method::ALL[i].name();
        i += 1;
    }
    out
};

impl Ablation {
    /// Its flags as (name without dashes, value).
    pub(crate) fn flag_pairs(&self) -> Vec<(String, String)> {
        self.flags
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect()
    }
}

impl Spec {
    /// A mask at initialisation of this grid by its variant name — a method it lists, or an
    /// ablation's `<method>-<name>` — as its method and its `awt prune` flags (a search's
    /// `layers-from`).
    pub(crate) fn mask_variant(&self, variant: &str) -> Result<(Method, Vec<(String, String)>)> {
        let at_init = |m: &str| m.parse::<Method>().ok().filter(|m| m.recipe() == TicketRecipe::MaskAtInit);
        if let Some(m) = self.methods.iter().find(|m| *m == variant).and_then(|m| at_init(m)) {
            return Ok((m, Vec::new()));
        }
        let ab = self.ablations.iter().find(|a| format!("{}-{}", a.method, a.name) == variant);
        match ab.and_then(|a| at_init(&a.method).map(|m| (m, a))) {
            Some((m, a)) => Ok((m, a.flag_pairs())),
            None => bail!(
                "`{variant}` is no mask at initialisation of this grid (a method among {} it lists, or an ablation of one)",
                masks_at_init().join(", ")
            ),
        }
    }
}

/// The masks chosen at initialisation and trained from their initial weights (`awt prune`).
pub(crate) fn masks_at_init() -> Vec<&'static str> {
    Method::names_by(TicketRecipe::MaskAtInit)
}

#[cfg(test)]
mod tests;
