//! Tests of the parent module.

use super::*;

/// The value of `flag` in `step`'s command.
pub(super) fn arg<'a>(step: &'a Step, flag: &str) -> &'a str {
    let i = step.args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{}: no {flag}", step.name));
    &step.args[i + 1]
}

/// A step's arguments without its `--out` and with its `--model` file written `INIT`: what two runs
/// share when each makes the same mask in its own folder.
pub(super) fn same_command(s: &Step) -> Vec<String> {
    let init = arg(s, "--model").to_string();
    let mut v = s.args.clone();
    let out = v.iter().position(|a| a == "--out").unwrap();
    v.drain(out..out + 2);
    v.into_iter().map(|a| if a == init { "INIT".into() } else { a }).collect()
}

/// `held` (a search in a folder whose path contains `held_dir`) is `plain`'s command (in `plain_dir`)
/// with one flag more, `--layer-densities-from` and the mask it names.
pub(super) fn one_flag_more(held: &Step, held_dir: &str, plain: &Step, plain_dir: &str) {
    assert_eq!(
        held.args.iter().filter(|a| !a.contains(held_dir) && *a != "--layer-densities-from").count(),
        plain.args.iter().filter(|a| !a.contains(plain_dir)).count(),
        "the plain search's command and one flag more"
    );
}

/// The study runs AutoAttack on its first `autoattack_n` images and the worst case on all `n`;
/// every preset's every run plans without error and ends with the evaluation that marks it done.
#[test]
fn every_preset_plans_and_the_study_limits_autoattack_only() {
    for preset in [
        "smoke",
        "quick",
        "ntt-validation",
        "study",
        "paper",
        "select-mlp-budget",
        "select-mlp",
        "select-lenet5-budget",
        "select-lenet5",
        "final-mlp",
        "final-lenet5",
    ] {
        let spec = crate::spec::load(preset).unwrap();
        let runs = match expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None) {
            Ok(runs) => runs,
            // A final preset plans once its selection has decided (a_selected_preset_waits_for_its_selection).
            Err(e) if spec.selected.is_some() && format!("{e:#}").contains("not decided yet") => continue,
            Err(e) => panic!("{preset}: {e:#}"),
        };
        assert!(!runs.is_empty(), "{preset}");
        for run in &runs {
            let steps = steps(run, &spec, "fashion-mnist").unwrap();
            let last = steps.last().unwrap();
            assert_eq!(last.name, "eval", "{preset} {}", run.name);
            assert_eq!(arg(last, "--limit"), spec.eval.n.to_string());
            // Training and searches resume from their saved state; nothing else claims one.
            for st in &steps {
                let want = match st.name.as_str() {
                    "train" => Some("train/state.safetensors"),
                    "pretrain-train" => Some("pretrain/state.safetensors"),
                    "search" => Some("ticket.safetensors.search.state.safetensors"),
                    _ => None,
                };
                assert_eq!(
                    st.resume_from.as_ref().map(|p| p.strip_prefix(&run.dir).unwrap().to_path_buf()),
                    want.map(PathBuf::from),
                    "{}",
                    st.name
                );
            }
            if let Some(aa) = steps.iter().find(|s| s.name == "eval-aa") {
                assert_eq!(arg(aa, "--attack"), "autoattack");
                assert_eq!(arg(aa, "--limit"), spec.eval.autoattack_n.unwrap_or(spec.eval.n).to_string());
            }
        }
    }
    let study = crate::spec::load("study").unwrap();
    assert_eq!((study.eval.n, study.eval.autoattack_n), (10_000, Some(1000)));
}

/// An ablation's follow-up seeds join the grid exactly when the records show it above plain AWT
/// at its first seed under the run's current settings; run names and hashes do not move.
#[test]
fn ablations_that_beat_plain_awt_gain_their_follow_up_seeds() {
    let spec = crate::spec::load("study").unwrap();
    assert!(spec.ablations.iter().all(|a| a.follow_up_seeds == [1, 2]), "the study promotes to seeds 1 and 2");
    let base = Path::new("/nowhere");
    let plain = expand(&spec, "fashion-mnist", base, &|_, _| None).unwrap();
    let canon: std::collections::BTreeMap<String, String> =
        plain.iter().map(|r| (r.name.clone(), r.canonical.clone())).collect();
    let count = |runs: &[Run], label: &str| runs.iter().filter(|r| r.name.contains(label)).count();
    // Records: plain AWT 0.60; ker10 0.61 (beats it); steps400 0.59 (does not); clean-adv 0.70 but
    // recorded under other settings (a stale record must not promote it).
    let recorded = |name: &str, c: &str| -> Option<f64> {
        let current = canon.get(name).is_some_and(|k| k == c);
        let v = match name {
            "lenet-300-100-awt-d0.05-s0" => 0.60,
            "lenet-300-100-awt-ker10-d0.05-s0" => 0.61,
            "lenet-300-100-awt-steps400-d0.05-s0" => 0.59,
            "lenet-300-100-awt-clean-adv-d0.05-s0" => return (!current).then_some(0.70),
            // NTT's own ablation is compared with plain NTT, not AWT.
            "lenet-300-100-ntt-d0.05-s0" => 0.50,
            "lenet-300-100-ntt-ker1e-3-d0.05-s0" => 0.55,
            _ => return None,
        };
        current.then_some(v)
    };
    let grown = expand(&spec, "fashion-mnist", base, &recorded).unwrap();
    assert_eq!(grown.len(), plain.len() + 4);
    assert_eq!(count(&grown, "-awt-ker10-"), 3);
    assert_eq!(count(&grown, "-ntt-ker1e-3-d0.05-"), 3);
    // Promotion is per density: nothing is recorded at 0.02, so only its seed 0 is planned there.
    assert_eq!(count(&grown, "-ntt-ker1e-3-d0.02-"), 1);
    assert_eq!(count(&grown, "-awt-steps400-"), 1);
    assert_eq!(count(&grown, "-awt-clean-adv-"), 1);
    for seed in [1, 2] {
        let r = grown.iter().find(|r| r.name == format!("lenet-300-100-awt-ker10-d0.05-s{seed}")).unwrap();
        assert_eq!(r.flags, vec![("lambda-ker".to_string(), "10.0".to_string())]);
        assert!(r.dense_dir.as_ref().unwrap().to_string_lossy().contains(&format!("dense-d1-s{seed}-")));
    }
    for r in &plain {
        let same = grown.iter().find(|g| g.name == r.name).unwrap();
        assert_eq!(same.dir, r.dir, "a promotion renames nothing");
    }
    // A mask's ablation changes its `awt prune` step.
    let r = grown.iter().find(|r| r.name == "lenet-300-100-random-rescaled-d0.02-s0").unwrap();
    let prune = &steps(r, &spec, "fashion-mnist").unwrap()[1];
    assert_eq!(prune.name, "prune");
    assert_eq!(arg(prune, "--rescale"), "unit-norm");
    assert_eq!(arg(prune, "--method"), "random");
    // Without plain AWT's record no AWT ablation is promoted (NTT's still is: it has plain NTT's).
    let no_plain = |n: &str, c: &str| if n == "lenet-300-100-awt-d0.05-s0" { None } else { recorded(n, c) };
    assert_eq!(expand(&spec, "fashion-mnist", base, &no_plain).unwrap().len(), plain.len() + 2);
}

/// `[[more_seeds]]` adds the listed methods at the listed seeds only, named and hashed as the grid's
/// own runs, and moves no run already planned.
#[test]
fn more_seeds_add_runs_for_their_methods_only() {
    let p = crate::workspace::root().join("experiments/ntt-validation.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let strip = |t: &str| t.split("\n[[more_seeds]]").next().unwrap().to_string();
    let grid = crate::spec::parse(&strip(&text), &p, "ntt-validation").unwrap();
    let more =
        format!("{}\n[[more_seeds]]\nmethods = [\"ntt\", \"random\"]\nseeds = [5, 6]\nwhy = \"w\"\n", strip(&text));
    let spec = crate::spec::parse(&more, &p, "ntt-validation").unwrap();
    let base = Path::new("/nowhere");
    let a = expand(&grid, "fashion-mnist", base, &|_, _| None).unwrap();
    let b = expand(&spec, "fashion-mnist", base, &|_, _| None).unwrap();
    assert_eq!(b.len(), a.len() + 4);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.name, &x.dir), (&y.name, &y.dir), "a planned run moved");
    }
    let extra: Vec<&str> = b[a.len()..].iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        extra,
        [
            "lenet-300-100-random-d0.03-s5",
            "lenet-300-100-ntt-d0.03-s5",
            "lenet-300-100-random-d0.03-s6",
            "lenet-300-100-ntt-d0.03-s6"
        ]
    );
    // The same settings as the grid's run of that method: only the seed differs.
    let s0 = a.iter().find(|r| r.name == "lenet-300-100-ntt-d0.03-s0").unwrap();
    assert_eq!(b[a.len() + 1].canonical, s0.canonical.replace("seed=0", "seed=5"));
    // Refused: a method outside the grid, a seed of the grid.
    let bad = |m: &str, s: &str| {
        let t = format!("{}\n[[more_seeds]]\nmethods = [{m}]\nseeds = [{s}]\n", strip(&text));
        crate::spec::parse(&t, &p, "ntt-validation").unwrap_err().to_string()
    };
    assert!(bad("\"awt\"", "5").contains("method `awt` is not one of the grid's methods"));
    assert!(bad("\"ntt\"", "0").contains("seed 0 is already one of the grid's seeds"));
}

/// Study v2's budget selection: every step that reads the data holds the same 10,000 images out (the
/// initialisation's statistics too), the evaluation scores the validation split, the dense ablations
/// change only the training budget, and the hold-out is part of every run's hash.
#[test]
fn the_budget_selection_trains_on_the_training_part_and_scores_validation() {
    let spec = crate::spec::load("select-mlp-budget").unwrap();
    let runs = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(runs.len(), 12, "{names:?}");
    assert!(runs.iter().all(|r| r.method.is_dense() && r.canonical.contains(" validation=10000")));
    let budget = |name: &str| {
        let run = runs.iter().find(|r| r.name == name).unwrap();
        let steps = steps(run, &spec, "fashion-mnist").unwrap();
        for st in steps.iter().filter(|s| s.args.iter().any(|a| a == "--data" || a == "--standardize")) {
            assert_eq!(arg(st, "--validation"), "10000", "{}", st.name);
        }
        assert_eq!(arg(steps.last().unwrap(), "--split"), "validation");
        let train = steps.iter().find(|s| s.name == "train").unwrap();
        (arg(train, "--epochs").to_string(), arg(train, "--schedule").to_string())
    };
    assert_eq!(budget("lenet-300-100-dense-d1-s100"), ("10".into(), "constant".into()));
    assert_eq!(budget("lenet-300-100-dense-e30-d1-s101"), ("30".into(), "constant".into()));
    assert_eq!(budget("lenet-300-100-dense-cos20-d1-s100"), ("20".into(), "cosine".into()));
    assert_eq!(budget("lenet-300-100-dense-cos10-d1-s100"), ("10".into(), "cosine".into()));
    // A validation split the preset does not hold out is refused by name.
    let p = crate::workspace::root().join("experiments/select-mlp-budget.toml");
    let text = std::fs::read_to_string(&p).unwrap().replace("validation = 10000\n", "");
    let e = crate::spec::parse(&text, &p, "select-mlp-budget").unwrap_err().to_string();
    assert!(e.contains("split = \"validation\" needs `validation = N`"), "{e}");
}

/// A search with rewound weights rewinds its transferred-weights twin's ticket once that exists,
/// and searches (resumably) while it does not; runs without a twin are untouched.
#[test]
fn a_rewound_search_rewinds_its_twins_ticket_when_there_is_one() {
    let spec = crate::spec::load("study").unwrap();
    let base = std::env::temp_dir().join(format!("awt-plan-rewind-{}", std::process::id()));
    let runs = expand(&spec, "fashion-mnist", &base, &|_, _| None).unwrap();
    let rewind = runs.iter().find(|r| r.name == "lenet-300-100-awt-rewind-d0.05-s0").unwrap();
    let plain = runs.iter().find(|r| r.name == "lenet-300-100-awt-d0.05-s0").unwrap();
    assert_eq!(rewind.rewind_from.as_ref(), Some(&plain.dir));
    assert!(runs.iter().filter(|r| r.rewind_from.is_some()).all(|r| r.name.contains("-rewind-")));
    let search = |r: &Run| steps(r, &spec, "fashion-mnist").unwrap().into_iter().find(|s| s.name == "search").unwrap();
    let before = search(rewind);
    assert!(!before.args.iter().any(|a| a == "--rewind-from") && before.resume_from.is_some());
    std::fs::create_dir_all(&plain.dir).unwrap();
    std::fs::write(plain.dir.join("ticket.safetensors"), b"x").unwrap();
    let after = search(rewind);
    assert_eq!(arg(&after, "--rewind-from"), plain.dir.join("ticket.safetensors").display().to_string());
    assert!(after.resume_from.is_none());
    assert!(!search(plain).args.iter().any(|a| a == "--rewind-from"));
    std::fs::remove_dir_all(&base).unwrap();
}

/// IMP-AT and HYDRA at their own schedules and compute-matched (protocol §3): the final training's,
/// the rounds' and the fine-tuning's epochs follow the tables and the ablation's flags, and with
/// `hash_method_tables` a change of `[imp]` renames the IMP-AT runs only.
#[test]
fn imp_and_hydra_schedules_follow_their_tables_and_ablations() {
    let p = crate::workspace::root().join("experiments/study.toml");
    let text =
        std::fs::read_to_string(&p).unwrap().replacen("record = true", "record = true\nhash_method_tables = true", 1);
    let text = text.replace("[imp]\nrounds = 3\nepochs = 5", "[imp]\nrounds = 3\nepochs = 5\nfinal_epochs = 30");
    let extra = "\n[[ablation]]\nname = \"matched\"\nmethod = \"imp-at\"\ndensities = [0.05]\nseeds = [0]\nflags = { imp-epochs = 5, final-epochs = 15 }\n\
\n[[ablation]]\nname = \"matched\"\nmethod = \"hydra\"\ndensities = [0.05]\nseeds = [0]\nflags = { pretrain-epochs = 15, hydra-epochs = 5, finetune-epochs = 10 }\n";
    let spec = crate::spec::parse(&format!("{text}{extra}"), &p, "study").unwrap();
    let runs = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
    let epochs = |name: &str, step_name: &str, flag: &str| -> String {
        let r = runs.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{name}"));
        let st = steps(r, &spec, "fashion-mnist").unwrap();
        arg(st.iter().find(|s| s.name == step_name).unwrap(), flag).to_string()
    };
    assert_eq!(epochs("lenet-300-100-imp-at-d0.05-s0", "train", "--epochs"), "30");
    assert_eq!(epochs("lenet-300-100-imp-at-matched-d0.05-s0", "train", "--epochs"), "15");
    assert_eq!(epochs("lenet-300-100-imp-at-matched-d0.05-s0", "imp-at", "--imp-epochs"), "5");
    assert_eq!(epochs("lenet-300-100-hydra-d0.05-s0", "train", "--epochs"), "10");
    assert_eq!(epochs("lenet-300-100-hydra-matched-d0.05-s0", "pretrain-train", "--epochs"), "15");
    assert_eq!(epochs("lenet-300-100-hydra-matched-d0.05-s0", "hydra", "--hydra-epochs"), "5");
    assert_eq!(epochs("lenet-300-100-hydra-matched-d0.05-s0", "train", "--epochs"), "10");
    assert_eq!(epochs("lenet-300-100-awt-d0.05-s0", "train", "--epochs"), "10");
    // The [imp] table is in IMP-AT's hash only.
    let other =
        crate::spec::parse(&format!("{}{extra}", text.replace("final_epochs = 30", "final_epochs = 29")), &p, "study")
            .unwrap();
    let again = expand(&other, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
    for (a, b) in runs.iter().zip(&again) {
        assert_eq!(a.dir == b.dir, a.method != awt_runs::Method::ImpAt, "{}", a.name);
    }
}

/// HYDRA's pretraining comes from the dense run of its seed only where that run trains the same
/// way: at a constant learning rate up to the dense run's length; with a cosine schedule only at
/// the same length; never without `[dynamics]` (no kept epochs), nor when the training recipes differ.
#[test]
fn hydra_starts_from_the_dense_runs_epoch_only_where_it_is_the_same_training() {
    let p = crate::workspace::root().join("experiments/final-lenet5.toml");
    let base = std::fs::read_to_string(&p).unwrap();
    let plan = |text: &str| {
        let mut spec = crate::spec::parse(text, &p, "final-lenet5").unwrap();
        spec.selected = None;
        let runs = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
        let h = runs.iter().find(|r| r.name == "lenet5-caffe-hydra-matched-d0.05-s201").unwrap().clone();
        (h.pretrained_from.clone(), steps(&h, &spec, "fashion-mnist").unwrap())
    };
    let (from, st) = plan(&base);
    let from = from.expect("constant rate, 10 of the dense run's 20 epochs");
    assert!(
        from.ends_with("train/epochs/epoch-010.safetensors") && from.display().to_string().contains("-dense-d1-s201-")
    );
    assert_eq!(st.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()[..3], ["init", "hydra", "mask"]);
    // Cosine: the first 10 of 20 epochs are not a 10-epoch training.
    let cosine = base.replace("schedule = \"constant\"", "schedule = \"cosine\"");
    let (from, st) = plan(&cosine);
    assert!(from.is_none() && st.iter().any(|s| s.name == "pretrain-train"));
    // ... unless the pretraining is as long as the dense run.
    let (from, _) = plan(&cosine.replace("pretrain-epochs = 10", "pretrain-epochs = 20"));
    assert!(from.unwrap().ends_with("epoch-020.safetensors"));
    // Longer than the dense run, or a dense run that also tracks its kernel: no reuse.
    let (from, _) = plan(&base.replace("pretrain-epochs = 10", "pretrain-epochs = 21"));
    assert!(from.is_none());
    let (from, _) = plan(&base.replace("track_kernel = false", "track_kernel = true"));
    assert!(from.is_none());
    // Without [dynamics] no run keeps its epochs.
    let (from, st) = plan(&base.replace("[dynamics]\nprobe = 64\nsteps = 10\n", ""));
    assert!(from.is_none() && st.iter().any(|s| s.name == "pretrain-train"));
}

/// A preset with `[selected]` plans only once its selection decides, and says what is missing
/// (here a selection preset without a single NTT run: its λ_ker can never be decided).
#[test]
fn a_selected_preset_waits_for_its_selection() {
    let p = crate::workspace::root().join("experiments").join("quick.toml");
    let text = std::fs::read_to_string(&p).unwrap() + "\n[selected]\nfrom = \"select-mlp-budget\"\n";
    let spec = crate::spec::parse(&text, &p, "quick").unwrap();
    let e = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("quick: [selected]: select-mlp-budget: λ_ker for ntt at density 0.2 is not decided yet (0 of 2 runs recorded)"), "{e}");
}

/// final-mlp runs what docs/protocol.md §3 and §5 say: the primary rows at seeds 200-204, the
/// secondary at 200-202, SNIP/GraSP/SynFlow ranked globally (per layer as `-layerwise`), the
/// compute-matched IMP-AT and HYDRA adding up to the dense net's E adversarial epochs, the test
/// split, and each search's λ_ker left to `[selected]` (here unset, so the base value plans).
#[test]
fn the_final_mlp_preset_runs_what_the_protocol_says() {
    let mut spec = crate::spec::load("final-mlp").unwrap();
    assert_eq!(spec.selected.as_ref().map(|s| s.from.as_str()), Some("select-mlp"));
    spec.selected = None;
    let runs = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
    let seeds = |v: &str| -> Vec<u64> {
        let mut s: Vec<u64> = runs.iter().filter(|r| variant_of(&r.name, &r.arch) == v).map(|r| r.seed).collect();
        s.dedup();
        s
    };
    // ntk-sap-global and its shuffled control: exploratory rows added after the final comparison
    // (docs/protocol.md, "Recorded").
    for v in [
        "dense",
        "random",
        "snip",
        "synflow",
        "ntt",
        "awt",
        "imp-at-matched",
        "hydra-matched",
        "ntk-sap-global",
        "ntk-sap-global-shuffled",
        "ntk-sap-layerwise",
        "awt-ntk-sap-layers",
        "synflow-shuffled",
        "random-erk",
        "snip-shuffled",
        "awt-erk-layers",
    ] {
        assert_eq!(seeds(v), [200, 201, 202, 203, 204], "{v}");
    }
    for v in ["magnitude", "grasp", "imp-at", "hydra", "snip-layerwise", "synflow-layerwise"] {
        assert_eq!(seeds(v), [200, 201, 202], "{v}");
    }
    assert_eq!(runs.len(), 191);
    let e = spec.train.epochs;
    let step_of = |name: &str, step: &str| -> Step {
        let r = runs.iter().find(|r| r.name == name).unwrap();
        steps(r, &spec, "fashion-mnist").unwrap().into_iter().find(|s| s.name == step).unwrap()
    };
    // Compute-matched: IMP-AT's rounds and final training, HYDRA's three stages, add up to E.
    let imp = step_of("lenet-300-100-imp-at-matched-d0.05-s200", "imp-at");
    let imp_final = step_of("lenet-300-100-imp-at-matched-d0.05-s200", "train");
    let rounds: usize = arg(&imp, "--imp-rounds").parse().unwrap();
    let each: usize = arg(&imp, "--imp-epochs").parse().unwrap();
    assert_eq!(rounds * each + arg(&imp_final, "--epochs").parse::<usize>().unwrap(), e);
    // HYDRA's pretraining is the dense run's network after that many epochs (link_pretraining):
    // its own and the compute-matched one, every seed and density.
    for r in runs.iter().filter(|r| r.method == awt_runs::Method::Hydra) {
        let dense = runs.iter().find(|d| d.method.is_dense() && d.seed == r.seed).unwrap();
        let k = if r.name.contains("-matched-") { 15 } else { 30 };
        let want = dense.dir.join("train/epochs").join(format!("epoch-{k:03}.safetensors"));
        assert_eq!(r.pretrained_from.as_ref(), Some(&want), "{}", r.name);
        let st = steps(r, &spec, "fashion-mnist").unwrap();
        assert!(!st.iter().any(|s| s.name == "pretrain-train"), "{}", r.name);
        assert_eq!(arg(st.iter().find(|s| s.name == "hydra").unwrap(), "--model"), want.display().to_string());
    }
    let h = "lenet-300-100-hydra-matched-d0.02-s204";
    let stages: usize = [("hydra", "--hydra-epochs"), ("train", "--epochs")]
        .iter()
        .map(|(st, f)| arg(&step_of(h, st), f).parse::<usize>().unwrap())
        .sum();
    assert_eq!(stages + 15, e);
    // Global ranking for SNIP, GraSP, SynFlow; per layer for their labelled variants and random.
    assert_eq!(arg(&step_of("lenet-300-100-snip-d0.05-s200", "prune"), "--allocation"), "global");
    assert_eq!(arg(&step_of("lenet-300-100-synflow-d0.02-s203", "prune"), "--allocation"), "global");
    assert_eq!(arg(&step_of("lenet-300-100-ntk-sap-global-d0.02-s204", "prune"), "--allocation"), "global");
    let shuffled = step_of("lenet-300-100-ntk-sap-global-shuffled-d0.05-s200", "prune");
    assert_eq!((arg(&shuffled, "--allocation"), arg(&shuffled, "--shuffle")), ("global", "layer"));
    assert_eq!(arg(&step_of("lenet-300-100-snip-layerwise-d0.05-s201", "prune"), "--allocation"), "uniform");
    assert!(!step_of("lenet-300-100-random-d0.05-s200", "prune").args.iter().any(|a| a == "--allocation"));
    assert_eq!(arg(&step_of("lenet-300-100-ntk-sap-layerwise-d0.02-s203", "prune"), "--allocation"), "uniform");
    assert_eq!(arg(&step_of("lenet-300-100-random-erk-d0.05-s202", "prune"), "--allocation"), "erk");
    let shuffled = step_of("lenet-300-100-synflow-shuffled-d0.02-s204", "prune");
    assert_eq!((arg(&shuffled, "--allocation"), arg(&shuffled, "--shuffle")), ("global", "layer"));
    // AWT at NTK-SAP's allocation: its run makes the ntk-sap-global run's mask with that run's own
    // command (only where it is written differs), and its search keeps that mask's layer counts.
    let layers = step_of("lenet-300-100-awt-ntk-sap-layers-d0.05-s201", "layers");
    let sap = step_of("lenet-300-100-ntk-sap-global-d0.05-s201", "prune");
    assert_eq!(same_command(&layers), same_command(&sap));
    assert!(arg(&layers, "--model").ends_with("init.safetensors") && layers.done.ends_with("layers.safetensors"));
    let search = step_of("lenet-300-100-awt-ntk-sap-layers-d0.05-s201", "search");
    assert_eq!(Path::new(arg(&search, "--layer-densities-from")), layers.done);
    assert!(!search.args.iter().any(|a| a == "--layers-from"), "{:?}", search.args);
    let plain = step_of("lenet-300-100-awt-d0.05-s201", "search");
    one_flag_more(&search, "awt-ntk-sap-layers", &plain, "lenet-300-100-awt-d0.05-s201");
    // The test split, and the validation images held out of training.
    let eval = step_of("lenet-300-100-awt-d0.05-s200", "eval");
    assert_eq!(arg(&eval, "--split"), "test");
    assert_eq!(arg(&step_of("lenet-300-100-awt-d0.05-s200", "train"), "--validation"), "10000");
}

/// With `[selected]`, a search's ablation takes the selected flags of its density (λ_ker, weights)
/// under its own: `final-mlp`'s AWT at NTK-SAP's allocation searches as plain AWT does at each density.
#[test]
fn a_search_ablation_takes_the_selected_flags_of_its_density() {
    let spec = crate::spec::load("final-mlp").unwrap();
    let runs = match expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None) {
        Ok(runs) => runs,
        Err(e) => panic!("final-mlp plans from select-mlp's records: {e:#}"),
    };
    for d in ["0.05", "0.02"] {
        let find = |name: &str| runs.iter().find(|r| r.name == name).unwrap();
        let plain = find(&format!("lenet-300-100-awt-d{d}-s202"));
        let ab = find(&format!("lenet-300-100-awt-ntk-sap-layers-d{d}-s202"));
        // Rewound weights at both densities; λ_ker other than the base value at 0.02 only.
        assert!(plain.flags.contains(&("weights".into(), "rewind".into())), "{d}: {:?}", plain.flags);
        assert_eq!(plain.flags.iter().any(|(k, _)| k == "lambda-ker"), d == "0.02", "{d}: {:?}", plain.flags);
        let mut want = plain.flags.clone();
        want.push(("layers-from".into(), "ntk-sap-global".into()));
        assert_eq!(ab.flags, want, "{d}");
    }
}
