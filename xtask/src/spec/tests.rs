//! The preset reader's checks.

use super::*;

/// docs/ARCHITECTURE.md "How to add a method": the quick preset lists every method of the run
/// contract, in report order, so a new method is run and reported from its first commit. The
/// first study's preset stays as its 89 recorded runs were planned: every method but those
/// added after it (NTK-SAP, 2026-12-07).
#[test]
fn the_quick_preset_runs_every_method() {
    let read = |preset: &str| {
        let p = root().join(format!("experiments/{preset}.toml"));
        parse(&std::fs::read_to_string(&p).unwrap(), &p, preset).unwrap().methods
    };
    assert_eq!(read("quick"), METHODS);
    let added_after_the_study = ["ntk-sap"];
    let before: Vec<&str> = METHODS.into_iter().filter(|m| !added_after_the_study.contains(m)).collect();
    assert_eq!(read("study"), before);
}

/// An ablation may change only its method's ticket-step flags; other methods are refused by name.
#[test]
fn ablations_are_checked_against_their_methods_flags() {
    let p = root().join("experiments/study.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let spec = parse(&text, &p, "study").unwrap();
    assert!(spec.ablations.iter().any(|a| a.method == "random" && a.flags.contains_key("rescale")));
    let with = |ablation: &str| parse(&format!("{text}\n[[ablation]]\n{ablation}\n"), &p, "study");
    let e = with("name = \"x\"\nmethod = \"snip\"\ndensities = [0.05]\nseeds = [0]\nflags = { steps = 10 }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("flag `steps` of method snip is not one of rescale, allocation"), "{e}");
    let e =
        with("name = \"x\"\nmethod = \"awt\"\ndensities = [0.05]\nseeds = [0]\nflags = { rescale = \"unit-norm\" }")
            .unwrap_err()
            .to_string();
    assert!(e.contains("flag `rescale` of method awt is not one of steps,"), "{e}");
    let e =
        with("name = \"x\"\nmethod = \"ntk\"\ndensities = [0.05]\nseeds = [0]\nflags = {}").unwrap_err().to_string();
    assert!(e.contains("ablation `x`: method must be a search (ntt, awt), a mask at initialisation"), "{e}");
    let e = with("name = \"x\"\nmethod = \"hydra\"\ndensities = [0.05]\nseeds = [0]\nflags = { steps = 3 }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("flag `steps` of method hydra is not one of pretrain-epochs, hydra-epochs, finetune-epochs"),
        "{e}"
    );
    // A search's layers-from names a mask at initialisation of the grid.
    for (v, why) in [("ntt", "`ntt` is no mask at initialisation"), ("snip-nope", "`snip-nope` is no mask")] {
        let e = with(&format!(
            "name = \"x\"\nmethod = \"awt\"\ndensities = [0.05]\nseeds = [0]\nflags = {{ layers-from = \"{v}\" }}"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("ablation `x`: layers-from = \"{v}\": {why}")), "{e}");
    }
    // Counts come from a variant that makes its mask alone, and replace an allocation.
    for (flags, why) in [
        ("layers-from = \"snip-x\"", "takes its layer counts from another"),
        ("layers-from = \"random\", allocation = \"erk\"", "layers-from and allocation both say"),
    ] {
        let e =
            with(&format!("name = \"x\"\nmethod = \"snip\"\ndensities = [0.05]\nseeds = [0]\nflags = {{ {flags} }}"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("study.toml: ablation `x`: layers-from") && e.contains(why), "{e}");
    }
}

/// One epoch of HYDRA's score optimisation has learning rate 0 (its code's schedule): refused,
/// naming the file and the setting.
#[test]
fn a_single_hydra_epoch_is_refused() {
    let p = root().join("experiments/smoke.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(parse(&text, &p, "smoke").is_ok());
    let one = text.replace("epochs = 2\nlr = 0.1", "epochs = 1\nlr = 0.1");
    assert_ne!(one, text);
    let e = parse(&one, &p, "smoke").unwrap_err().to_string();
    assert!(e.contains("smoke.toml: [hydra] epochs = 1") && e.contains("use at least 2"), "{e}");
}

/// A repeated seed, method or ablation would run once but count twice; each is refused by name.
#[test]
fn empty_grids_and_zero_counts_are_refused_naming_the_key() {
    let p = root().join("experiments/quick.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let err = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        parse(&text.replacen(from, to, 1), &p, "quick").unwrap_err().to_string()
    };
    assert!(err("seeds = [0]", "seeds = []").contains("`seeds` is empty"));
    assert!(err("archs = [\"lenet-300-100\"]", "archs = []").contains("`archs` is empty"));
    assert!(err("densities = [0.2, 0.05, 0.02]", "densities = []").contains("`densities` is empty"));
    assert!(err("epochs = 3", "epochs = 0").contains("[train] epochs = 0: it must be at least 1"));
    assert!(err("steps = 200", "steps = 0").contains("[search] steps = 0"));
    parse(&text, &p, "quick").unwrap();
}

#[test]
fn repeated_grid_entries_are_refused() {
    let p = root().join("experiments/study.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let e = parse(&text.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 1]"), &p, "study").unwrap_err().to_string();
    assert!(e.contains("`seeds` lists 1 twice"), "{e}");
    let e = parse(&text.replace("\"imp-at\", \"hydra\"]", "\"imp-at\", \"hydra\", \"awt\"]"), &p, "study")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`methods` lists awt twice"), "{e}");
    let e = parse(&format!("{text}\n[[ablation]]\nname = \"ker10\"\nmethod = \"awt\"\ndensities = [0.02]\nseeds = [0]\nflags = {{ lambda-ker = 10.0 }}\n"), &p, "study")
        .unwrap_err()
        .to_string();
    assert!(e.contains("two [[ablation]] tables are named awt-ker10"), "{e}");
}

/// The fuzz corpus of the preset parser (`fuzz/corpus/preset`) replayed without a panic; its seeds,
/// the shipped presets renamed `fuzz`, parse.
#[test]
fn the_preset_fuzz_corpus_replays_without_panic() {
    let dir = root().join("fuzz/corpus/preset");
    let (mut n, mut parsed) = (0, 0);
    for e in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            parsed += usize::from(parse(text, Path::new("fuzz.toml"), "fuzz").is_ok());
        }
        n += 1;
    }
    assert!(n >= 6 && parsed >= 6, "{parsed} of {n} corpus files parsed in {}", dir.display());
}
