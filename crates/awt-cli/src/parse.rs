//! How `awt` reads its command line: `--config FILE` expanded, clap's parse, then the check that no
//! flag is given that the command's choice does not read (`awt_runs::reads`).

use anyhow::{Context, Result, bail};

use crate::args::value_name;
use crate::commands::{Cli, Cmd};

/// The value `awt <command>` has for `selector` (typed, so a default counts as given): what
/// decides which of its flags are read (`awt_runs::reads`).
pub(crate) fn selector_value(cmd: &Cmd, selector: &str) -> Option<String> {
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

#[cfg(test)]
mod contract_tests {
    use awt_runs::argv::Argv;
    use awt_runs::settings::{Eval, Hydra, Imp, Prune, Search, TicketJob, Train};
    use awt_runs::{Density, Method};

    use crate::args::value_name;
    use crate::commands::Cmd;

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
            curve: Some(vec![0.0, 0.05, 0.1]),
        };
        let worst = e.worst("m", "fashion-mnist", 0.1, 7, "e.json");
        let Cmd::Eval(cv) = parse(e.curve(&worst, "curve.json").unwrap()) else { panic!("not eval") };
        assert_eq!(
            (cv.eps_curve.as_slice(), cv.limit, cv.steps, cv.seed),
            (&[0.0, 0.05, 0.1][..], Some(10_000), 20, 7)
        );
        assert_eq!(cv.json.as_deref().and_then(|p| p.to_str()), Some("curve.json"));
        assert_eq!(value_name(&cv.attack), "worst");
        let Cmd::Eval(w) = parse(worst.clone()) else { panic!("not eval") };
        assert_eq!((w.limit, w.eps, w.steps, w.apgd_steps, w.seed), (Some(10_000), 0.1, 20, 100, 7));
        assert_eq!((value_name(&w.attack), value_name(&w.split)), ("worst".into(), "validation".into()));
        let Cmd::Eval(aa) = parse(e.autoattack(&worst, "aa.json").unwrap()) else { panic!("not eval") };
        assert_eq!((value_name(&aa.attack), aa.limit), ("autoattack".into(), Some(500)));
        assert_eq!(aa.json.as_deref().and_then(|p| p.to_str()), Some("aa.json"));
        assert_eq!(aa.apgd_steps, 100);
        let clean = Eval { attack: Some("none".into()), autoattack: false, curve: None, ..e };
        let Cmd::Eval(c) = parse(clean.worst("m", "fashion-mnist", 0.1, 7, "c.json")) else { panic!("not eval") };
        assert_eq!((value_name(&c.attack), c.limit), ("none".into(), Some(10_000)));
    }

    /// Every flag and selector of `awt_runs::reads` is a flag of its command, with a value the
    /// check can read (a wrong spelling there would check nothing).
    #[test]
    fn every_listed_flag_and_selector_is_a_flag_of_its_command() {
        use clap::CommandFactory;
        let cli = crate::commands::Cli::command();
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
                let parsed = <crate::commands::Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
                assert_eq!(super::selector_value(&parsed.cmd, r.selector).as_deref(), Some(*value), "{r:?}");
            }
        }
    }
}
