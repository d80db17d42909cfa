//! A grid's runs and each run's `awt` command lines: a run is a folder named by its configuration's
//! hash; each step names the file whose existence marks it done, so an interrupted run continues
//! where it stopped.

use awt_runs::layout;
use std::path::{Path, PathBuf};

use anyhow::Result;
use awt_runs::argv::Argv;

use awt_runs::{Density, TicketRecipe};

use crate::spec::Spec;

pub(crate) use awt_runs::fnv;

/// The method with its ablation of a run named `<arch>-<variant>-d<density>-s<seed>`.
pub(crate) fn variant_of(name: &str, arch: &str) -> String {
    awt_runs::variant_in(name, arch).to_string()
}

/// The headline robust accuracy `results/` records for a run, given its name and canonical settings
/// (`None` when it is not recorded under exactly those settings).
pub(crate) type Recorded<'a> = &'a dyn Fn(&str, &str) -> Option<f64>;

/// The runs of `spec` on `data`, in grid order (seeds, then methods, then densities), under `base`.
/// An ablation's `follow_up_seeds` join once `recorded` shows it beating its plain method.
pub(crate) fn expand(spec: &Spec, data: &str, base: &Path, recorded: Recorded) -> Result<Vec<Run>> {
    let settings = shared_settings(spec, data)?;
    let canonical = |arch: &str, method: &str, density: Density, seed: u64, flags: &[(String, String)]| {
        canonical_text(spec, &settings, RunKey { arch, method, density, seed }, flags)
    };
    // Does the ablation beat its plain method at its first seed (both recorded)?
    let beats_plain = |arch: &str, ab: &crate::spec::Ablation, density: Density| -> Result<bool> {
        let Some(&s) = ab.seeds.first() else { return Ok(false) };
        let own = recorded(
            &format!("{arch}-{}-{}-d{density}-s{s}", ab.method, ab.name),
            &canonical(arch, &ab.method, density, s, &run_flags(spec, ab, density)?),
        );
        let plain =
            recorded(&format!("{arch}-{}-d{density}-s{s}", ab.method), &canonical(arch, &ab.method, density, s, &[]));
        Ok(matches!((own, plain), (Some(a), Some(p)) if a > p))
    };
    let mut runs = Vec::new();
    // The grid's seeds with every method, then `[[more_seeds]]` with theirs.
    let mut seed_methods: Vec<(u64, Vec<String>)> = spec.seeds.iter().map(|&s| (s, spec.methods.clone())).collect();
    for more in &spec.more_seeds {
        for &s in &more.seeds {
            let methods = spec.methods.iter().filter(|m| more.methods.contains(m)).cloned().collect();
            seed_methods.push((s, methods));
        }
    }
    for arch in &spec.archs {
        for (seed, methods) in &seed_methods {
            let seed = *seed;
            let mut add = |method: &str, label: &str, density: Density, flags: Vec<(String, String)>| {
                let canonical = canonical(arch, method, density, seed, &flags);
                let name = format!("{arch}-{label}-d{density}-s{seed}");
                let dir = base.join(format!("{name}-{}", &fnv(&canonical)[..10]));
                runs.push(Run {
                    name,
                    dir,
                    arch: arch.clone(),
                    method: method.parse().expect("methods are checked when the spec is read"),
                    density,
                    seed,
                    canonical,
                    flags,
                    dense_dir: None,
                    rewind_from: None,
                    pretrained_from: None,
                });
            };
            for method in methods {
                let densities = if method == "dense" { vec![Density::ONE] } else { spec.densities.clone() };
                for density in densities {
                    add(method, method, density, selected_flags(spec, method, density)?);
                }
            }
            for ab in &spec.ablations {
                for &density in &ab.densities {
                    let follow_up = ab.follow_up_seeds.contains(&seed) && beats_plain(arch, ab, density)?;
                    if ab.seeds.contains(&seed) || follow_up {
                        add(&ab.method, &format!("{}-{}", ab.method, ab.name), density, run_flags(spec, ab, density)?);
                    }
                }
            }
        }
    }
    link_twins(&mut runs);
    if spec.dynamics.is_some() {
        link_dense(&mut runs);
        link_pretraining(&mut runs, spec, data)?;
    }
    Ok(runs)
}

/// HYDRA with `[dynamics]`: where the dense run of the same seed makes the same `awt init` and the
/// same `awt train` as HYDRA's pretraining but for the length (and its kept epochs), at a constant
/// learning rate (or the same length), its network after the pretraining's epochs is the pretrained
/// net bit for bit (`awt train` at a constant rate does not depend on the epochs still to come;
/// `a_dense_runs_kept_epoch_is_a_shorter_training_bit_for_bit` in awt-cli's tests), so HYDRA's
/// scores start from it instead of training that net once more per density.
fn link_pretraining(runs: &mut [Run], spec: &Spec, data: &str) -> Result<()> {
    let dense: Vec<Run> = runs.iter().filter(|r| r.method.is_dense()).cloned().collect();
    let args = |st: &[Step], name: &str| st.iter().find(|s| s.name == name).map(|s| s.args.clone());
    let value = |a: &[String], flag: &str| {
        a.iter().position(|x| x == flag).and_then(|i| a.get(i + 1)).and_then(|v| v.parse::<usize>().ok())
    };
    // A command without the values of `blank` (where it reads and writes, its length) and without
    // the kept epochs.
    let normal = |a: &[String], blank: &[&str]| {
        let mut out: Vec<String> = Vec::new();
        let mut it = a.iter();
        while let Some(x) = it.next() {
            if x != "--keep-epochs" {
                out.push(x.clone());
            }
            if blank.contains(&x.as_str()) {
                it.next();
            }
        }
        out
    };
    let train_blank = ["--init", "--out", "--epochs"];
    let constant = spec.train.schedule.as_deref().unwrap_or("constant") == "constant";
    for run in runs.iter_mut().filter(|r| r.method.recipe() == TicketRecipe::Hydra) {
        let Some(d) = dense.iter().find(|d| Some(&d.dir) == run.dense_dir.as_ref()) else { continue };
        let (own, theirs) = (steps(run, spec, data)?, steps(d, spec, data)?);
        let (Some(pre), Some(train)) = (args(&own, "pretrain-train"), args(&theirs, "train")) else { continue };
        let (Some(i1), Some(i2)) = (args(&own, "init"), args(&theirs, "init")) else { continue };
        let (Some(k), Some(e)) = (value(&pre, "--epochs"), value(&train, "--epochs")) else { continue };
        let same = normal(&pre, &train_blank) == normal(&train, &train_blank)
            && normal(&i1, &["--out"]) == normal(&i2, &["--out"]);
        if same && k <= e && (constant || k == e) {
            run.pretrained_from = Some(d.dir.join(layout::TRAIN).join(layout::EPOCHS).join(layout::epoch_file(k)));
        }
    }
    Ok(())
}

/// With `[selected]`: the ticket-step flags a search method's runs take at `density`, as the
/// selection preset's records decide them (an error naming what is missing until they do).
fn selected_flags(spec: &Spec, method: &str, density: Density) -> Result<Vec<(String, String)>> {
    let Some(sel) = &spec.selected else { return Ok(Vec::new()) };
    let search = method.parse::<awt_runs::Method>().is_ok_and(|m| m.recipe() == TicketRecipe::Search);
    if !search {
        return Ok(Vec::new());
    }
    let d = crate::select::from_records(&sel.from, sel.weights_from.as_deref(), method, density.get())
        .map_err(|e| anyhow::anyhow!("{}: [selected]: {e:#}", spec.name))?;
    Ok(d.flags)
}

/// The settings every run of the grid shares, as the canonical text its hash covers.
fn shared_settings(spec: &Spec, data: &str) -> Result<String> {
    let table = |k: &str| -> Result<String> {
        spec.raw.get(k).map(|v| v.to_string()).ok_or_else(|| anyhow::anyhow!("spec has no `{k}`"))
    };
    let mut settings = format!(
        "data={data} train={} search={} prune={} eval={}",
        table("train")?,
        table("search")?,
        table("prune")?,
        table("eval")?
    );
    if let Some(n) = spec.validation {
        settings += &format!(" validation={n}");
    }
    if let Some(o) = &spec.output_layer {
        settings += &format!(" output_layer={o}");
    }
    // Optional tables join the hash only when present, so older presets keep their run names.
    for key in ["init", "dynamics"] {
        if let Some(t) = spec.raw.get(key) {
            settings += &format!(" {key}={t}");
        }
    }
    Ok(settings)
}

/// What names one run of a grid.
struct RunKey<'a> {
    arch: &'a str,
    method: &'a str,
    density: Density,
    seed: u64,
}

/// Every setting that shapes a run, as text: its hash names the run's folder.
fn canonical_text(spec: &Spec, settings: &str, k: RunKey, flags: &[(String, String)]) -> String {
    let RunKey { arch, method, density, seed } = k;
    let extra: String = flags.iter().map(|(k, v)| format!(" {k}={v}{}", made_by(spec, k, v))).collect();
    // A method's own table shapes its runs (study v2 presets hash it; earlier ones did not).
    let own = match (spec.hash_method_tables, method) {
        (true, "imp-at") => spec.raw.get("imp").map(|t| format!(" imp={t}")).unwrap_or_default(),
        (true, "hydra") => spec.raw.get("hydra").map(|t| format!(" hydra={t}")).unwrap_or_default(),
        _ => String::new(),
    };
    format!("arch={arch} method={method} density={density} seed={seed} {settings}{own}{extra}")
}

/// What makes the mask a search's `layers-from` names — its method and `awt prune` flags — as text
/// for the hash: a change of that variant's flags renames the runs that keep its layer counts as well
/// as its own, so the runner re-makes both (empty for any other flag).
fn made_by(spec: &Spec, flag: &str, value: &str) -> String {
    if flag != "layers-from" {
        return String::new();
    }
    // The name was checked when the spec was read; a name that resolves to nothing keeps the text
    // it has.
    let Ok((method, flags)) = spec.mask_variant(value) else { return String::new() };
    let flags: String = flags.iter().map(|(k, v)| format!(" {k}={v}")).collect();
    format!("[method={method}{flags}]")
}

/// An ablation's run flags at `density`: with `[selected]`, a search's selected flags (its λ_ker and
/// weights), its own flags replacing or joining them; else its own flags.
fn run_flags(spec: &Spec, ab: &crate::spec::Ablation, density: Density) -> Result<Vec<(String, String)>> {
    let mut flags = selected_flags(spec, &ab.method, density)?;
    for (k, v) in ab.flag_pairs() {
        match flags.iter_mut().find(|(f, _)| *f == k) {
            Some(f) => f.1 = v,
            None => flags.push((k, v)),
        }
    }
    Ok(flags)
}

/// A rewound-weights search's twin: same network, method, density, seed and flags but `weights`; its
/// folder becomes the run's `rewind_from`.
fn link_twins(runs: &mut [Run]) {
    let twins: Vec<(usize, PathBuf)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.flags.iter().any(|(k, v)| k == "weights" && v == "rewind"))
        .filter_map(|(i, r)| {
            let want: Vec<&(String, String)> = r.flags.iter().filter(|(k, _)| k != "weights").collect();
            let twin = runs.iter().find(|t| {
                (&t.arch, &t.method, t.density, t.seed) == (&r.arch, &r.method, r.density, r.seed)
                    && t.flags.len() == want.len()
                    && want.iter().all(|f| t.flags.contains(f))
            })?;
            Some((i, twin.dir.clone()))
        })
        .collect();
    for (i, dir) in twins {
        runs[i].rewind_from = Some(dir);
    }
}

/// With `[dynamics]`: each sparse run's dense run of the same network and seed.
fn link_dense(runs: &mut [Run]) {
    let dense: Vec<(String, u64, PathBuf)> =
        runs.iter().filter(|r| r.method.is_dense()).map(|r| (r.arch.clone(), r.seed, r.dir.clone())).collect();
    for r in runs.iter_mut().filter(|r| !r.method.is_dense()) {
        r.dense_dir = dense.iter().find(|(a, s, _)| *a == r.arch && *s == r.seed).map(|(_, _, d)| d.clone());
    }
}

/// The steps of `run`, in order; the last is the evaluation.
pub(crate) fn steps(run: &Run, spec: &Spec, data: &str) -> Result<Vec<Step>> {
    let c = Ctx { run, spec, data };
    let mut init = Argv::new("init").flag("--arch", &run.arch).flag("--seed", run.seed);
    if let Some(i) = &spec.init {
        init = init.flag_opt("--init", i.scheme.as_ref());
        if i.standardize {
            init = init.flag("--standardize", data).flag_opt("--validation", spec.validation);
        }
    }
    let mut out = vec![step("init", init.flag("--out", c.d(layout::INIT)), c.d(layout::INIT))];
    out.extend(ticket_steps(&c)?);
    let start = if run.method.is_dense() { c.d(layout::INIT) } else { c.d(layout::TICKET) };
    if !run.method.is_dense() {
        // The ticket's structure (density and cut-off units per layer), recorded with the results.
        let args = Argv::new("inspect").arg(&start).flag("--json", c.d(layout::MASK));
        out.push(step("mask", args, c.d(layout::MASK)));
    }
    // IMP-AT's final training and HYDRA's fine-tuning have their own length where the spec gives one.
    let epochs = match run.method.recipe() {
        TicketRecipe::ImpAt => c.flag("final-epochs").or(spec.imp.as_ref().and_then(|i| i.final_epochs)),
        TicketRecipe::Hydra => c.flag("finetune-epochs").or(spec.hydra.as_ref().and_then(|h| h.finetune_epochs)),
        _ => None,
    };
    let mut train = Argv::new("train")
        .flag(if run.method.is_dense() { "--init" } else { "--ticket" }, &start)
        .then(c.train_flags(epochs.unwrap_or(spec.train.epochs)));
    if spec.train.track_kernel != Some(false) {
        train = train.flag("--track-kernel", c.d(layout::INIT));
    }
    if spec.dynamics.is_some() {
        train = train.switch("--keep-epochs");
    }
    train = train.flag("--out", c.d(layout::TRAIN));
    if run.method.is_dense() {
        // A dense ablation changes the training budget (`epochs`, `schedule`).
        train = train.ablated(&run.flags);
    }
    out.push(Step {
        resume_from: Some(c.d(&format!("{}/{}", layout::TRAIN, layout::STATE)).into()),
        ..step("train", train, c.d(&format!("{}/{}", layout::TRAIN, layout::MODEL)))
    });
    out.extend(dynamics_step(&c, &start));
    out.extend(eval_steps(&c));
    if let Some(n) = spec.validation {
        // Every step that reads the data set holds the same images out.
        for s in out.iter_mut().filter(|s| s.args.iter().any(|a| a == "--data")) {
            s.args.extend(["--validation".to_string(), n.to_string()]);
        }
    }
    if let Some(o) = &spec.output_layer {
        // Every step that makes a mask follows the one output-layer rule.
        for s in out.iter_mut().filter(|s| ["prune", "ticket"].contains(&s.args[0].as_str())) {
            s.args.extend(["--output-layer".to_string(), o.clone()]);
        }
    }
    Ok(out)
}

/// With `[dynamics]`: the kernel dynamics against the dense run of the same seed.
fn dynamics_step(c: &Ctx, start: &str) -> Option<Step> {
    let (Some(dy), Some(dense)) = (&c.spec.dynamics, &c.run.dense_dir) else { return None };
    let dd = |p: &str| dense.join(p).display().to_string();
    let args = Argv::new("dynamics")
        .flag("--dense", dd(layout::TRAIN))
        .flag("--dense-init", dd(layout::INIT))
        .flag("--run", c.d(layout::TRAIN))
        .flag("--init", start)
        .flag("--data", c.data)
        .flag("--probe", dy.probe)
        .flag("--eps", c.spec.train.eps)
        .flag("--steps", dy.steps)
        .flag("--seed", c.run.seed)
        .flag("--out", c.d(layout::DYNAMICS));
    Some(step("dynamics", args, c.d(layout::DYNAMICS)))
}

/// The final evaluations: AutoAttack (with `autoattack`, on its own `autoattack_n`), the security
/// curve (with `curve`), then the worst case, whose file marks the run evaluated.
fn eval_steps(c: &Ctx) -> Vec<Step> {
    let e = &c.spec.eval;
    let model = c.d(&format!("{}/{}", layout::TRAIN, layout::MODEL));
    let worst = e.worst(&model, c.data, c.spec.train.eps, c.run.seed, &c.d(layout::EVAL));
    let aa = e.autoattack(&worst, &c.d(layout::EVAL_AA)).map(|aa| step("eval-aa", aa, c.d(layout::EVAL_AA)));
    let curve = e.curve(&worst, &c.d(layout::CURVE)).map(|cv| step("curve", cv, c.d(layout::CURVE)));
    aa.into_iter().chain(curve).chain([step("eval", worst, c.d(layout::EVAL))]).collect()
}

mod argv;
mod run;
mod ticket;
use argv::{Ctx, step};
pub(crate) use run::{Run, Step};
use ticket::ticket_steps;

#[cfg(test)]
mod added_tests;
#[cfg(test)]
mod tests;
