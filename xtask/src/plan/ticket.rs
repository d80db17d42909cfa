//! The steps that make a run's ticket from its initialisation, one builder per kind of method:
//! masks at initialisation (`awt prune`), the NTT/AWT search (`awt ticket`, or a rewind of its
//! twin's ticket), IMP-AT's rounds and HYDRA's pretraining and score optimisation.

use anyhow::Result;
use awt_runs::TicketRecipe;
use awt_runs::layout;

use super::argv::{Ctx, step, strings, train_flags, with_flags};
use super::run::Step;

/// The steps that make the ticket (`ticket.safetensors`) from the initialisation: none for the
/// dense net.
pub(super) fn ticket_steps(c: &Ctx) -> Result<Vec<Step>> {
    let (run, spec, data, seed) = (c.run, c.spec, c.data, c.seed.as_str());
    let density = run.density.to_string();
    let ticket = c.d(layout::TICKET);
    let init = c.d(layout::INIT);
    let eps = spec.train.eps.to_string();
    let limit = |args: &mut Vec<String>| {
        if let Some(n) = spec.train.train_limit {
            args.extend(strings(&["--train-limit", &n.to_string()]));
        }
    };
    let method = run.method;
    Ok(match method.recipe() {
        TicketRecipe::None => Vec::new(),
        TicketRecipe::MaskAtInit => {
            let p = &spec.prune;
            let (batch, rounds) = (p.batch.to_string(), p.rounds.to_string());
            let mut args = strings(&[
                "prune",
                "--method",
                method.name(),
                "--density",
                &density,
                "--model",
                &init,
                "--data",
                data,
                "--batch",
                &batch,
                "--rounds",
                &rounds,
                "--seed",
                seed,
                "--out",
                &ticket,
            ]);
            if let Some(alloc) = p.allocation.get(method.name()) {
                args.extend(strings(&["--allocation", alloc]));
            }
            vec![step("prune", with_flags(args, &run.flags), ticket.clone())]
        }
        TicketRecipe::Search => {
            let s = &spec.search;
            let args = strings(&[
                "ticket",
                "--method",
                method.name(),
                "--density",
                &density,
                "--model",
                &init,
                "--data",
                data,
                "--steps",
                &s.steps.to_string(),
                "--batch",
                &s.batch.to_string(),
                "--lr",
                &s.lr.to_string(),
                "--lambda-ker",
                &s.lambda_ker.to_string(),
                "--lambda-l2",
                &s.lambda_l2.to_string(),
                "--mask-every",
                &s.mask_every.to_string(),
                "--eps",
                &eps,
                "--attack-steps",
                &s.attack_steps.to_string(),
                "--seed",
                seed,
                "--quiet",
                "--out",
                &ticket,
            ]);
            let mut args = with_flags(args, &run.flags);
            let twin = run.rewind_from.as_ref().map(|d| d.join(layout::TICKET)).filter(|t| t.exists());
            if let Some(t) = twin {
                // The twin searched already: rewinding its ticket gives this run's ticket byte for byte.
                args.extend(strings(&["--rewind-from", &t.display().to_string()]));
                return Ok(vec![step("search", args, ticket.clone())]);
            }
            let state = Some(c.d(&format!("{}.{}", layout::TICKET, layout::SEARCH_STATE)).into());
            vec![Step { resume_from: state, ..step("search", args, ticket.clone()) }]
        }
        TicketRecipe::ImpAt => {
            // Lottery tickets: R rounds of (PGD-AT, magnitude pruning to d^(r/R), rewind to the
            // initialisation), as one resumable `awt prune --method imp-at`.
            let imp = spec.imp.as_ref().expect("checked when the spec was read");
            let mut args = strings(&[
                "prune",
                "--method",
                method.name(),
                "--density",
                &density,
                "--model",
                &init,
                "--data",
                data,
                "--imp-rounds",
                &imp.rounds.to_string(),
                "--imp-epochs",
                &c.flag("imp-epochs").unwrap_or(imp.epochs).to_string(),
                "--eps",
                &eps,
                "--attack-steps",
                &spec.train.steps.to_string(),
                "--step-size",
                &spec.train.step_size.to_string(),
                "--seed",
                seed,
                "--out",
                &ticket,
            ]);
            limit(&mut args);
            vec![step("imp-at", args, ticket.clone())]
        }
        TicketRecipe::Hydra => {
            // HYDRA: adversarially pretrain the dense net, optimise importance scores under the
            // robust loss, keep the top-k; the final training fine-tunes the pruned weights.
            let h = spec.hydra.as_ref().expect("checked when the spec was read");
            let mut t = strings(&["train", "--init", &init]);
            t.extend(train_flags(run, spec, data, c.flag("pretrain-epochs").unwrap_or(h.pretrain_epochs)));
            t.extend(strings(&["--out", &c.d("pretrain")]));
            let pretrain = Step {
                resume_from: Some(c.d(&format!("pretrain/{}", layout::STATE)).into()),
                ..step("pretrain-train", t, c.d(&format!("pretrain/{}", layout::MODEL)))
            };
            let mut p = strings(&[
                "prune",
                "--method",
                method.name(),
                "--density",
                &density,
                "--model",
                &c.d(&format!("pretrain/{}", layout::MODEL)),
                "--data",
                data,
                "--hydra-epochs",
                &c.flag("hydra-epochs").unwrap_or(h.epochs).to_string(),
                "--hydra-lr",
                &h.lr.to_string(),
                "--eps",
                &eps,
                "--attack-steps",
                &spec.train.steps.to_string(),
                "--seed",
                seed,
                "--out",
                &ticket,
            ]);
            limit(&mut p);
            vec![pretrain, step("hydra", p, ticket.clone())]
        }
    })
}
