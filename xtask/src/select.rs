//! The selection rules of docs/protocol.md §4, in one place: docs/selection.md renders them from
//! the selection presets' records, and a final preset's `[selected]` reads its NTT and AWT settings
//! through them (λ_ker per method and density, §4.2; transferred or rewound weights, §4.3), so no
//! selected value is ever copied by hand. A rule decides only once every candidate has every
//! selection seed.

use anyhow::{Context, Result, bail};
use awt_runs::layout;

use crate::spec::Spec;
use crate::workspace::root;

/// One candidate: a variant of the preset, what it sets, and its validation scores by seed.
pub(crate) struct Candidate {
    pub variant: String,
    /// What the candidate sets, in words (`30 epochs, cosine`, `λ_ker 0.01`).
    pub label: String,
    /// The candidate's cost or size for the rules' tie-breaks (epochs; λ_ker).
    pub key: f64,
    pub scores: Vec<(u64, f64)>,
}

impl Candidate {
    pub(crate) fn mean(&self) -> f64 {
        self.scores.iter().map(|s| s.1).sum::<f64>() / self.scores.len().max(1) as f64
    }
}

/// A preset's validation scores: `(variant, density, seed)` → the worst-case robust accuracy.
pub(crate) type Scores<'a> = &'a dyn Fn(&str, f64) -> Vec<(u64, f64)>;

/// The value of an ablation's flag, else the base setting.
fn flag(spec: &Spec, variant: &str, method: &str, key: &str) -> Option<String> {
    let name = variant.strip_prefix(&format!("{method}-"))?;
    let ab = spec.ablations.iter().find(|a| a.method == method && a.name == name)?;
    ab.flags.get(key).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
}

/// The flags a candidate of a rule may set: the budget's (§4.1, the dense net) or λ_ker and the
/// weights (§4.2-4.3). An ablation setting anything else is a measurement beside the rules, never
/// a candidate (LeNet-5's full-length search, §4.5).
fn rule_flags(method: &str) -> &'static [&'static str] {
    if method == "dense" { &["epochs", "schedule"] } else { &["lambda-ker", "weights"] }
}

/// The candidates of `method` at `density` in `spec`: the base runs and each ablation of the method
/// that sets only what the rules select ([`rule_flags`]).
pub(crate) fn candidates(spec: &Spec, scores: Scores, method: &str, density: f64) -> Vec<Candidate> {
    let mut variants = vec![method.to_string()];
    variants.extend(
        spec.ablations
            .iter()
            .filter(|a| a.method == method && a.flags.keys().all(|k| rule_flags(method).contains(&k.as_str())))
            .map(|a| format!("{method}-{}", a.name)),
    );
    variants
        .into_iter()
        .map(|v| {
            let (label, key) = if method == "dense" {
                let epochs = flag(spec, &v, method, "epochs").unwrap_or_else(|| spec.train.epochs.to_string());
                let schedule = flag(spec, &v, method, "schedule")
                    .unwrap_or_else(|| spec.train.schedule.clone().unwrap_or_else(|| "constant".into()));
                (format!("{epochs} epochs, {schedule}"), epochs.parse().unwrap_or(f64::NAN))
            } else {
                let l = flag(spec, &v, method, "lambda-ker").unwrap_or_else(|| spec.search.lambda_ker.to_string());
                (format!("λ_ker {l}"), l.parse().unwrap_or(f64::NAN))
            };
            Candidate { scores: scores(&v, density), variant: v, label, key }
        })
        .collect()
}

/// The rule of protocol §4.1: the cheapest candidate (fewest epochs; at equal epochs the higher
/// mean) whose mean is within `margin` (0.5 points) of the best mean.
pub(crate) fn cheapest_within(c: &[Candidate], margin: f64) -> usize {
    let best = c.iter().map(Candidate::mean).fold(f64::NEG_INFINITY, f64::max);
    let mut ok: Vec<usize> = (0..c.len()).filter(|&i| c[i].mean() >= best - margin).collect();
    ok.sort_by(|&a, &b| c[a].key.total_cmp(&c[b].key).then(c[b].mean().total_cmp(&c[a].mean())));
    ok[0]
}

/// The rule of protocol §4.2: the highest mean; a tie (to `tie` points) goes to the smaller value.
pub(crate) fn best_smaller_on_tie(c: &[Candidate], tie: f64) -> usize {
    let best = c.iter().map(Candidate::mean).fold(f64::NEG_INFINITY, f64::max);
    let mut ok: Vec<usize> = (0..c.len()).filter(|&i| c[i].mean() >= best - tie).collect();
    ok.sort_by(|&a, &b| c[a].key.total_cmp(&c[b].key));
    ok[0]
}

/// The rule of protocol §4.3 over `[transferred, rewound]`: the higher mean; a tie (to `tie`)
/// keeps the transferred weights.
pub(crate) fn rewound_if_better(c: &[Candidate], tie: f64) -> usize {
    usize::from(c[1].mean() > c[0].mean() + tie)
}

/// §4.1's margin, §4.2's and §4.3's tie, as fractions (0.5 and 0.1 points).
pub(crate) const BUDGET_MARGIN: f64 = 0.005;
pub(crate) const TIE: f64 = 0.001;

/// Every candidate has every seed.
pub(crate) fn complete(c: &[Candidate], seeds: &[u64]) -> bool {
    c.iter().all(|x| seeds.iter().all(|s| x.scores.iter().any(|(t, _)| t == s)))
}

/// The λ_ker candidates and the rewound ones (`<variant>-rewind`) of `method` at `density`.
pub(crate) fn lambda_and_rewind(
    spec: &Spec,
    scores: Scores,
    method: &str,
    density: f64,
) -> (Vec<Candidate>, Vec<Candidate>) {
    candidates(spec, scores, method, density).into_iter().partition(|x| !x.variant.ends_with("-rewind"))
}

/// What a selection decided for one method and density: the flags of the ticket step.
#[derive(Debug, PartialEq)]
pub(crate) struct Decision {
    /// The selected λ_ker's variant (`awt-ker1e-1`; the base method where it is the preset's own).
    pub variant: String,
    pub rewound: bool,
    /// The ticket step's flags that make it: the variant's (`lambda-ker`) and `weights = rewind`.
    pub flags: Vec<(String, String)>,
}

/// §4.2 then §4.3 for `method` at `density` of the selection preset `spec`, from `scores`; an
/// error that says what is missing while a rule cannot decide yet. `weights` decides §4.3 from
/// another preset's records (LeNet-5 carries the MLP's over, §4.5).
pub(crate) fn decide(
    spec: &Spec,
    scores: Scores,
    weights: Option<(&Spec, Scores)>,
    method: &str,
    density: f64,
) -> Result<Decision> {
    let (lam, _) = lambda_and_rewind(spec, scores, method, density);
    if !complete(&lam, &spec.seeds) {
        let done: usize = lam.iter().map(|x| x.scores.len()).sum();
        bail!(
            "{}: λ_ker for {method} at density {density} is not decided yet ({done} of {} runs recorded)",
            spec.name,
            lam.len() * spec.seeds.len()
        );
    }
    let best = &lam[best_smaller_on_tie(&lam, TIE)];
    let (wspec, wscores) = weights.unwrap_or((spec, scores));
    // §4.3 at the λ_ker selected by the preset that decides the weights.
    let (wlam, wrew) = lambda_and_rewind(wspec, wscores, method, density);
    let wbest = if std::ptr::eq(wspec, spec) {
        best
    } else {
        if !complete(&wlam, &wspec.seeds) {
            bail!("{}: λ_ker for {method} at density {density} is not decided yet", wspec.name);
        }
        &wlam[best_smaller_on_tie(&wlam, TIE)]
    };
    let want = format!("{}-rewind", wbest.variant);
    let Some(r) = wrew.into_iter().find(|x| x.variant == want) else {
        bail!(
            "{}: transferred vs rewound weights for {method} at density {density} needs the ablation `{want}`, not in the preset yet (protocol §4.3)",
            wspec.name
        )
    };
    let pair =
        [Candidate { variant: wbest.variant.clone(), label: String::new(), key: 0.0, scores: wbest.scores.clone() }, r];
    if !complete(&pair, &wspec.seeds) {
        bail!("{}: transferred vs rewound weights for {method} at density {density} is not decided yet", wspec.name);
    }
    let rewound = rewound_if_better(&pair, TIE) == 1;
    let mut flags: Vec<(String, String)> = match best.variant.strip_prefix(&format!("{method}-")) {
        Some(name) => {
            let ab =
                spec.ablations.iter().find(|a| a.method == method && a.name == name).expect("a candidate's ablation");
            ab.flags
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect()
        }
        None => Vec::new(),
    };
    if rewound {
        flags.push(("weights".into(), "rewind".into()));
    }
    Ok(Decision { variant: best.variant.clone(), rewound, flags })
}

/// The committed validation scores of a selection preset (`results/<preset>/`): each recorded
/// run's worst-case robust accuracy by variant, density and seed.
pub(crate) fn recorded_scores(preset: &str) -> Result<Vec<(String, f64, u64, f64)>> {
    let dir = root().join("results").join(preset);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in entries {
        let p = e.with_context(|| format!("cannot read {}", dir.display()))?.path().join(layout::MANIFEST);
        if !p.exists() {
            continue;
        }
        let m = crate::records::read_manifest(&p)?;
        out.push((m.variant(), m.density.get(), m.seed, m.robust()));
    }
    out.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    Ok(out)
}

/// `recorded_scores` as the rules read them.
pub(crate) fn scores_of(recs: &[(String, f64, u64, f64)]) -> impl Fn(&str, f64) -> Vec<(u64, f64)> + '_ {
    move |v, d| recs.iter().filter(|r| r.0 == v && (r.1 - d).abs() < 1e-12).map(|r| (r.2, r.3)).collect()
}

/// A final preset's `[selected]` decision for `method` at `density`, from the committed records.
pub(crate) fn from_records(from: &str, weights_from: Option<&str>, method: &str, density: f64) -> Result<Decision> {
    let spec = crate::spec::load(from)?;
    let recs = recorded_scores(from)?;
    let scores = scores_of(&recs);
    match weights_from.filter(|w| *w != from) {
        None => decide(&spec, &scores, None, method, density),
        Some(w) => {
            let wspec = crate::spec::load(w)?;
            let wrecs = recorded_scores(w)?;
            let wscores = scores_of(&wrecs);
            decide(&spec, &scores, Some((&wspec, &wscores)), method, density)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// select-mlp's own candidates with §4.3's rewound ablations for AWT at λ_ker 1e-1 and 1e-3
    /// (density 0.05), as they will join once §4.2 decides.
    fn with_rewind() -> Spec {
        let p = root().join("experiments").join("select-mlp.toml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        // Those the preset holds already (once §4.2 has decided for AWT) are not added twice.
        let has = crate::spec::load("select-mlp").unwrap();
        for (name, lam) in [("ker1e-1-rewind", "0.1"), ("rewind", "0.001")] {
            if has.ablations.iter().any(|a| a.method == "awt" && a.name == name) {
                continue;
            }
            text += &format!(
                "\n[[ablation]]\nname = \"{name}\"\nmethod = \"awt\"\ndensities = [0.05]\nseeds = [100, 101]\n\
flags = {{ lambda-ker = {lam}, weights = \"rewind\" }}\n"
            );
        }
        crate::spec::parse(&text, Path::new("select-mlp.toml"), "select-mlp").unwrap()
    }

    fn recs(rows: &[(&str, f64, f64)]) -> Vec<(String, f64, u64, f64)> {
        rows.iter().flat_map(|(v, a, b)| [(v.to_string(), 0.05, 100, *a), (v.to_string(), 0.05, 101, *b)]).collect()
    }

    /// §4.2 then §4.3 give the final runs' flags: undecided (a candidate lacks a seed, or the
    /// rewound ablation is not in the preset) is an error that says so; λ_ker 1e-1 best and its
    /// rewound weights more than 0.1 point better give both flags; a tie keeps transferred weights;
    /// the base λ_ker gives no λ flag; another preset can decide the weights (LeNet-5, §4.5).
    #[test]
    fn a_final_preset_takes_what_the_selection_decided() {
        let spec = with_rewind();
        let lam =
            [("awt", 0.66, 0.66), ("awt-ker1e-2", 0.67, 0.67), ("awt-ker1e-1", 0.68, 0.69), ("awt-ker1", 0.60, 0.61)];
        let mut r = recs(&lam);
        r.pop();
        let e = decide(&spec, &scores_of(&r), None, "awt", 0.05).unwrap_err().to_string();
        assert!(e.contains("λ_ker for awt at density 0.05 is not decided yet (7 of 8 runs recorded)"), "{e}");
        let r = recs(&lam);
        let e = decide(&spec, &scores_of(&r), None, "awt", 0.05).unwrap_err().to_string();
        assert!(e.contains("transferred vs rewound weights for awt at density 0.05 is not decided yet"), "{e}");
        let mut plain = crate::spec::load("select-mlp").unwrap();
        plain.ablations.retain(|a| !(a.method == "awt" && a.name.ends_with("rewind")));
        let e = decide(&plain, &scores_of(&r), None, "awt", 0.05).unwrap_err().to_string();
        assert!(e.contains("needs the ablation `awt-ker1e-1-rewind`"), "{e}");
        let mut both = lam.to_vec();
        both.push(("awt-ker1e-1-rewind", 0.69, 0.70));
        let r = recs(&both);
        let d = decide(&spec, &scores_of(&r), None, "awt", 0.05).unwrap();
        let want = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(d.variant, "awt-ker1e-1");
        assert!(d.rewound);
        assert_eq!(d.flags, want(&[("lambda-ker", "0.1"), ("weights", "rewind")]));
        both.pop();
        both.push(("awt-ker1e-1-rewind", 0.6855, 0.6855));
        let r = recs(&both);
        let d = decide(&spec, &scores_of(&r), None, "awt", 0.05).unwrap();
        assert_eq!((d.rewound, d.flags), (false, want(&[("lambda-ker", "0.1")])));
        // The base λ_ker (1e-3) wins within the tie: no λ flag; its rewound run decides the weights.
        let base =
            [("awt", 0.68, 0.69), ("awt-ker1e-2", 0.684, 0.687), ("awt-ker1e-1", 0.60, 0.61), ("awt-ker1", 0.6, 0.6)];
        let mut rows = base.to_vec();
        rows.push(("awt-rewind", 0.70, 0.70));
        let r = recs(&rows);
        let d = decide(&spec, &scores_of(&r), None, "awt", 0.05).unwrap();
        assert_eq!((d.variant.as_str(), d.flags), ("awt", want(&[("weights", "rewind")])));
        // Weights from another preset's records: its own λ_ker selection and rewound run decide them.
        let lam_only = recs(&lam);
        let d = decide(&plain, &scores_of(&lam_only), Some((&spec, &scores_of(&r))), "awt", 0.05).unwrap();
        assert_eq!(d.flags, want(&[("lambda-ker", "0.1"), ("weights", "rewind")]));
    }

    /// The budget §4.1 selected from the committed records is the one the presets after it train
    /// with (copied into their `[train]` by hand, so checked here): select-mlp and final-mlp.
    #[test]
    fn the_presets_train_at_the_budget_the_records_selected() {
        let spec = crate::spec::load("select-mlp-budget").unwrap();
        let recs = recorded_scores("select-mlp-budget").unwrap();
        let c = candidates(&spec, &scores_of(&recs), "dense", 1.0);
        assert!(complete(&c, &spec.seeds), "§4.1 is decided in the committed records");
        let chosen = &c[cheapest_within(&c, BUDGET_MARGIN)];
        for preset in ["select-mlp", "final-mlp"] {
            let p = crate::spec::load(preset).unwrap();
            let schedule = p.train.schedule.clone().unwrap_or_else(|| "constant".into());
            assert_eq!(format!("{} epochs, {schedule}", p.train.epochs), chosen.label, "{preset}");
        }
        // §4.5: LeNet-5's budget, with §4.1's schedule, from its own records.
        let spec = crate::spec::load("select-lenet5-budget").unwrap();
        let recs = recorded_scores("select-lenet5-budget").unwrap();
        let c = candidates(&spec, &scores_of(&recs), "dense", 1.0);
        assert!(complete(&c, &spec.seeds), "§4.5's budget is decided in the committed records");
        assert!(c.iter().all(|x| x.label.ends_with(&format!(", {}", chosen.label.split(", ").nth(1).unwrap()))));
        let lenet5 = &c[cheapest_within(&c, BUDGET_MARGIN)];
        for preset in ["select-lenet5", "final-lenet5"] {
            let p = crate::spec::load(preset).unwrap();
            let schedule = p.train.schedule.clone().unwrap_or_else(|| "constant".into());
            assert_eq!(format!("{} epochs, {schedule}", p.train.epochs), lenet5.label, "{preset}");
        }
    }

    /// §4.5's λ_ker candidates for LeNet-5: per method 1e-3 and the λ_ker select-mlp selected at
    /// density 0.05 (1e-2 where that is 1e-3), at density 0.05 and seed 100 only, transferred weights.
    #[test]
    fn the_lenet5_selection_tries_the_lambdas_the_protocol_names() {
        let mlp = crate::spec::load("select-mlp").unwrap();
        let recs = recorded_scores("select-mlp").unwrap();
        let spec = crate::spec::load("select-lenet5").unwrap();
        assert_eq!((spec.seeds.as_slice(), spec.densities.len()), ([100].as_slice(), 1));
        assert_eq!(spec.densities[0].get(), 0.05);
        // §3's λ_L2 for a CNN; §4.5's recorded search length (docs/protocol.md, "Recorded"); the
        // final runs search as the selection did, and take their weights from select-mlp.
        assert_eq!((spec.search.lambda_l2, spec.search.steps), (1e-5, 9360));
        let fin = crate::spec::load("final-lenet5").unwrap();
        assert_eq!(format!("{:?}", fin.search), format!("{:?}", spec.search));
        let sel = fin.selected.as_ref().unwrap();
        assert_eq!((sel.from.as_str(), sel.weights_from.as_deref()), ("select-lenet5", Some("select-mlp")));
        for method in ["ntt", "awt"] {
            let (lam, _) = lambda_and_rewind(&mlp, &scores_of(&recs), method, 0.05);
            assert!(complete(&lam, &mlp.seeds), "select-mlp decided λ_ker for {method} at 0.05");
            let mlp_choice = lam[best_smaller_on_tie(&lam, TIE)].key;
            let second = if mlp_choice == 1e-3 { 1e-2 } else { mlp_choice };
            let none = |_: &str, _: f64| Vec::new();
            let (mine, rew) = lambda_and_rewind(&spec, &none, method, 0.05);
            let keys: Vec<f64> = mine.iter().map(|c| c.key).collect();
            assert_eq!(keys, vec![1e-3, second], "{method}");
            assert!(rew.is_empty(), "{method}: weights are carried over from select-mlp, not selected");
        }
    }
}
