//! The steps that make a run's ticket from its initialisation, one builder per kind of method:
//! masks at initialisation (`awt prune`), the NTT/AWT search (`awt ticket`, or a rewind of its
//! twin's ticket), IMP-AT's rounds and HYDRA's pretraining and score optimisation.

use anyhow::Result;
use awt_runs::argv::Argv;
use awt_runs::settings::TicketJob;
use awt_runs::{TicketRecipe, layout};

use super::argv::{Ctx, step};
use super::run::Step;

/// The steps that make the ticket (`ticket.safetensors`) from the initialisation: none for the
/// dense net.
pub(super) fn ticket_steps(c: &Ctx) -> Result<Vec<Step>> {
    let (run, spec) = (c.run, c.spec);
    let (ticket, init) = (c.d(layout::TICKET), c.d(layout::INIT));
    let job = c.job(&init, &ticket);
    Ok(match run.method.recipe() {
        TicketRecipe::None => Vec::new(),
        TicketRecipe::MaskAtInit => {
            let (mut out, layers) = layers_step(c, &init)?;
            let args = spec.prune.mask(&job).ablated(&run.flags).without("--layers-from");
            out.push(step("prune", with_layers(args, layers), ticket.clone()));
            out
        }
        TicketRecipe::Search => {
            let (mut out, layers) = layers_step(c, &init)?;
            let args = with_layers(spec.search.ticket(&job).ablated(&run.flags).without("--layers-from"), layers);
            let twin = run.rewind_from.as_ref().map(|d| d.join(layout::TICKET)).filter(|t| t.exists());
            if let Some(t) = twin {
                // The twin searched already: rewinding its ticket gives this run's ticket byte for byte.
                let args = args.flag("--rewind-from", t.display());
                out.push(step("search", args, ticket.clone()));
                return Ok(out);
            }
            let state = Some(c.d(&format!("{}.{}", layout::TICKET, layout::SEARCH_STATE)).into());
            out.push(Step { resume_from: state, ..step("search", args, ticket.clone()) });
            out
        }
        TicketRecipe::ImpAt => {
            // Lottery tickets: R rounds of (PGD-AT, magnitude pruning to d^(r/R), rewind to the
            // initialisation), as one resumable `awt prune --method imp-at`.
            let imp = spec.imp.as_ref().expect("checked when the spec was read");
            let epochs = c.flag("imp-epochs").unwrap_or(imp.epochs);
            vec![step("imp-at", imp.rounds(&job, epochs, &spec.train), ticket.clone())]
        }
        TicketRecipe::Hydra => {
            // HYDRA: adversarially pretrain the dense net, optimise importance scores under the
            // robust loss, keep the top-k; the final training fine-tunes the pruned weights.
            let h = spec.hydra.as_ref().expect("checked when the spec was read");
            let hydra_epochs = c.flag("hydra-epochs").unwrap_or(h.epochs);
            if let Some(p) = &run.pretrained_from {
                // The dense run of this seed holds the pretrained net already (`link_pretraining`).
                let scores = h.scores(&c.job(&p.display().to_string(), &ticket), hydra_epochs, &spec.train);
                return Ok(vec![step("hydra", scores, ticket.clone())]);
            }
            let t = Argv::new("train")
                .flag("--init", &init)
                .then(c.train_flags(c.flag("pretrain-epochs").unwrap_or(h.pretrain_epochs)))
                .flag("--out", c.d("pretrain"));
            let pretrain = Step {
                resume_from: Some(c.d(&format!("pretrain/{}", layout::STATE)).into()),
                ..step("pretrain-train", t, c.d(&format!("pretrain/{}", layout::MODEL)))
            };
            let pretrained = c.d(&format!("pretrain/{}", layout::MODEL));
            let scores = h.scores(&c.job(&pretrained, &ticket), hydra_epochs, &spec.train);
            vec![pretrain, step("hydra", scores, ticket.clone())]
        }
    })
}

/// With a `layers-from` flag: the step that makes that variant's mask of this initialisation in the
/// run's folder (`layers.safetensors`), with the variant's own command (so it is the mask its runs
/// train), and that file, whose per-layer counts the run's mask keeps.
fn layers_step(c: &Ctx, init: &str) -> Result<(Vec<Step>, Option<String>)> {
    let Some((_, variant)) = c.run.flags.iter().find(|(k, _)| k == "layers-from") else {
        return Ok((Vec::new(), None));
    };
    let (method, flags) = c.spec.mask_variant(variant)?;
    let layers = c.d(layout::LAYERS);
    let mask = c.spec.prune.mask(&TicketJob { method, ..c.job(init, &layers) }).ablated(&flags);
    Ok((vec![step("layers", mask, layers.clone())], Some(layers)))
}

/// `args` held to the counts of `layers` (`--layer-densities-from`), where there is one: in place
/// of the allocation `[prune]` gives a score (the two are exclusive).
fn with_layers(args: Argv, layers: Option<String>) -> Argv {
    match layers {
        Some(l) => args.without("--allocation").flag("--layer-densities-from", &l),
        None => args,
    }
}
