//! Tests of the parent module: the rows added to the final presets after the final comparison
//! (docs/protocol.md, "Recorded") — a variant's layer counts (`layers-from`) in the hash and the
//! steps, and `final-lenet5`'s controls.

use super::tests::{arg, one_flag_more, same_command};
use super::*;

/// A search that keeps another variant's layer counts (`layers-from`) hashes what makes that mask:
/// a change of `ntk-sap-global`'s flags renames its own runs and AWT's at its counts, and no other.
#[test]
fn a_change_of_the_variant_a_search_keeps_the_counts_of_renames_both() {
    let p = crate::workspace::root().join("experiments/final-mlp.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let own = "name = \"global\"\nmethod = \"ntk-sap\"\ndensities = [0.05, 0.02]\nseeds = [200, 201, 202, 203, 204]\nflags = { allocation = \"global\" }";
    assert_eq!(text.matches(own).count(), 1, "final-mlp's ntk-sap-global ablation as written");
    let plan = |text: &str| {
        let spec = crate::spec::parse(text, &p, "final-mlp").unwrap();
        expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap()
    };
    let (runs, again) = (plan(&text), plan(&text.replace(own, &own.replace("\" }", "\", shuffle = \"layer\" }"))));
    assert_eq!(runs.len(), again.len());
    let mut renamed = 0;
    for (a, b) in runs.iter().zip(&again) {
        assert_eq!(a.name, b.name);
        let keeps = a.name.contains("-ntk-sap-global-d") || a.name.contains("-awt-ntk-sap-layers-");
        assert_eq!(a.dir != b.dir, keeps, "{}", a.name);
        renamed += usize::from(keeps);
    }
    assert_eq!(renamed, 20);
    let layers = runs.iter().find(|r| r.name == "lenet-300-100-awt-ntk-sap-layers-d0.05-s200").unwrap();
    assert!(
        layers.canonical.ends_with(" layers-from=ntk-sap-global[method=ntk-sap allocation=global]"),
        "{}",
        layers.canonical
    );
}

/// A mask at initialisation's `layers-from`: its run makes the named variant's mask with that
/// variant's own command and scores with the method's own command held to those counts, in place of
/// the allocation `[prune]` gives it.
#[test]
fn a_score_ablation_keeps_another_variants_layer_counts() {
    let p = crate::workspace::root().join("experiments/final-mlp.toml");
    let text = std::fs::read_to_string(&p).unwrap()
        + "\n[[ablation]]\nname = \"erk-layers\"\nmethod = \"snip\"\ndensities = [0.05]\nseeds = [200]\nflags = { layers-from = \"random-erk\" }\n";
    let spec = crate::spec::parse(&text, &p, "final-mlp").unwrap();
    let runs = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
    let steps_of = |name: &str| steps(runs.iter().find(|r| r.name == name).unwrap(), &spec, "fashion-mnist").unwrap();
    let held = steps_of("lenet-300-100-snip-erk-layers-d0.05-s200");
    let at = |name: &str| held.iter().position(|s| s.name == name).unwrap();
    let (layers, prune) = (&held[at("layers")], &held[at("prune")]);
    assert_eq!(at("layers") + 1, at("prune"), "the counts' mask first");
    let erk = steps_of("lenet-300-100-random-erk-d0.05-s200").into_iter().find(|s| s.name == "prune").unwrap();
    let plain = steps_of("lenet-300-100-snip-d0.05-s200").into_iter().find(|s| s.name == "prune").unwrap();
    let blank = |s: &Step| -> Vec<String> {
        let mut v = s.args.clone();
        for flag in ["--out", "--model", "--layer-densities-from", "--allocation"] {
            if let Some(i) = v.iter().position(|a| a == flag) {
                v.drain(i..i + 2);
            }
        }
        v
    };
    assert_eq!(blank(layers), blank(&erk), "random-erk's command");
    assert_eq!(arg(layers, "--allocation"), "erk");
    assert_eq!(Path::new(arg(prune, "--layer-densities-from")), layers.done);
    assert_eq!(arg(&plain, "--allocation"), "global", "[prune] gives SNIP its global ranking");
    assert!(!prune.args.iter().any(|a| a == "--allocation" || a == "--layers-from"), "{:?}", prune.args);
    assert_eq!(blank(prune), blank(&plain), "SNIP's own command otherwise");
}

/// `final-lenet5`'s rows added after the final comparison (docs/protocol.md, "Recorded"): NTK-SAP
/// ranked globally and shuffled, random at ERK densities at seeds 200–204, SynFlow shuffled at its
/// seeds 200–202, each pruned with the output layer kept dense and a dynamics step against the dense
/// run of its seed; the primary rows' runs unchanged.
#[test]
fn the_final_lenet5_preset_runs_the_added_controls() {
    let mut spec = crate::spec::load("final-lenet5").unwrap();
    spec.selected = None;
    let runs = expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
    let seeds = |v: &str| -> Vec<u64> {
        runs.iter().filter(|r| variant_of(&r.name, &r.arch) == v).map(|r| r.seed).collect::<Vec<_>>()
    };
    for v in ["ntk-sap-global", "ntk-sap-global-shuffled", "random-erk", "dense", "ntt", "awt"] {
        assert_eq!(seeds(v), [200, 201, 202, 203, 204], "{v}");
    }
    for v in ["synflow-shuffled", "synflow", "random", "hydra-matched"] {
        assert_eq!(seeds(v), [200, 201, 202], "{v}");
    }
    assert_eq!(seeds("awt-ntk-sap-layers"), [200, 201, 202, 203, 204]);
    assert_eq!(runs.len(), 24 + 18 + 5);
    let prune = |name: &str| -> Step {
        let r = runs.iter().find(|r| r.name == name).unwrap();
        let st = steps(r, &spec, "fashion-mnist").unwrap();
        assert!(st.iter().any(|s| s.name == "dynamics"), "{name}: kernel dynamics as every sparse run");
        st.into_iter().find(|s| s.name == "prune").unwrap()
    };
    let sap = prune("lenet5-caffe-ntk-sap-global-shuffled-d0.05-s203");
    assert_eq!(
        (arg(&sap, "--method"), arg(&sap, "--allocation"), arg(&sap, "--shuffle")),
        ("ntk-sap", "global", "layer")
    );
    assert_eq!(arg(&sap, "--output-layer"), "dense");
    assert_eq!(arg(&prune("lenet5-caffe-random-erk-d0.05-s204"), "--allocation"), "erk");
    let syn = prune("lenet5-caffe-synflow-shuffled-d0.05-s202");
    assert_eq!((arg(&syn, "--allocation"), arg(&syn, "--shuffle")), ("global", "layer"));
}

/// `final-lenet5`'s AWT at NTK-SAP's counts searches as its plain AWT does (the λ_ker select-lenet5
/// selected, the weights carried over from select-mlp), keeping the layer counts of the mask that the
/// `ntk-sap-global` run of its seed makes, made by that run's own command.
#[test]
fn the_final_lenet5_awt_at_ntk_saps_counts_is_its_plain_search_held_to_those_counts() {
    let spec = crate::spec::load("final-lenet5").unwrap();
    let runs = match expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None) {
        Ok(runs) => runs,
        Err(e) => panic!("final-lenet5 plans from select-lenet5's and select-mlp's records: {e:#}"),
    };
    let find = |name: &str| runs.iter().find(|r| r.name == name).unwrap();
    let (plain, ab) = (find("lenet5-caffe-awt-d0.05-s203"), find("lenet5-caffe-awt-ntk-sap-layers-d0.05-s203"));
    let mut want = plain.flags.clone();
    want.push(("layers-from".into(), "ntk-sap-global".into()));
    assert_eq!(ab.flags, want);
    let step_of = |name: &str, step: &str| -> Step {
        steps(find(name), &spec, "fashion-mnist").unwrap().into_iter().find(|s| s.name == step).unwrap()
    };
    let layers = step_of("lenet5-caffe-awt-ntk-sap-layers-d0.05-s203", "layers");
    let sap = step_of("lenet5-caffe-ntk-sap-global-d0.05-s203", "prune");
    assert_eq!(same_command(&layers), same_command(&sap), "ntk-sap-global's own command");
    let search = step_of("lenet5-caffe-awt-ntk-sap-layers-d0.05-s203", "search");
    assert_eq!(Path::new(arg(&search, "--layer-densities-from")), layers.done);
    let plain = step_of("lenet5-caffe-awt-d0.05-s203", "search");
    one_flag_more(&search, "awt-ntk-sap-layers", &plain, "lenet5-caffe-awt-d0.05-s203");
}
