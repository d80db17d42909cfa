//! The study report's ablations (each variant of AWT, NTT or a mask at initialisation against its plain method, and whether it
//! earns seeds 1 and 2) and the "beyond the paper" check: does any variant match the dense net's robust accuracy at
//! density 0.05, by the protocol's one rule (`decide::matches`: the interval's lower bound at least −1 point)?

use std::fmt::Write as _;

use anyhow::Result;

use super::data::{Measure, Rec, by_seed, values};
use crate::spec::Spec;
use crate::spec::plain_of;
use crate::stats::{paired, summary};

/// What an ablation changes, from the spec (`steps = 400`), or its name when the spec is not at hand.
fn changed(spec: Option<&Spec>, variant: &str) -> String {
    spec.and_then(|s| s.ablations.iter().find(|a| format!("{}-{}", a.method, a.name) == variant))
        .map(|a| {
            let f: Vec<String> =
                a.flags.iter().map(|(k, v)| format!("--{k} {}", v.as_str().unwrap_or(&v.to_string()))).collect();
            f.join(", ")
        })
        .unwrap_or_else(|| variant.to_string())
}

/// The methods an ablation may vary, in the report's order (the searches first), with their names
/// in prose.
const ABLATED: [(&str, &str); 7] = [
    ("awt", "AWT"),
    ("ntt", "NTT"),
    ("random", "random"),
    ("magnitude", "magnitude"),
    ("snip", "SNIP"),
    ("grasp", "GraSP"),
    ("synflow", "SynFlow"),
];

/// The ablation tables, one per method (AWT, NTT, then the masks at initialisation) and density
/// where a variant of it is recorded, each variant against its plain method.
pub(super) fn ablations(
    recs: &[Rec],
    vs: &[String],
    densities: &[f64],
    head: Measure,
    spec: Option<&Spec>,
) -> Result<String> {
    let mut md = String::new();
    for (method, label) in ABLATED {
        let abl: Vec<&String> = vs.iter().filter(|v| plain_of(v) == Some(method)).collect();
        for &d in densities {
            md += &ablation_table(recs, &abl, d, head, spec, (method, label))?;
        }
    }
    Ok(md)
}

/// One method's ablations at density `d` (empty when none is recorded there).
fn ablation_table(
    recs: &[Rec],
    abl: &[&String],
    d: f64,
    head: Measure,
    spec: Option<&Spec>,
    (method, label): (&str, &str),
) -> Result<String> {
    let mut md = String::new();
    let plain = by_seed(recs, method, d, |r| r.measure(head));
    let rows: Vec<&&String> = abl.iter().filter(|v| !by_seed(recs, v, d, |r| r.measure(head)).is_empty()).collect();
    if rows.is_empty() {
        return Ok(md);
    }
    let (what, table) = if matches!(method, "awt" | "ntt") { ("search", "[search]") } else { ("pruning", "[prune]") };
    writeln!(
        md,
        "### {label} ablations (density {d})\n\nEach variant changes one setting of plain {label}'s {what}; differences are paired with plain {label} by seed. \
A variant above plain {label} at its first seed is run at seeds 1 and 2 as well (`follow_up_seeds` in `experiments/study.toml`).\n"
    )?;
    writeln!(
        md,
        "| variant | changed | seeds | clean | PGD-20 | worst | − plain {label}, robust (points) | next |\n|---|---|---|---|---|---|---|---|"
    )?;
    let cell = |v: &str, m: Measure| summary(&values(&by_seed(recs, v, d, |r| r.measure(m)))).pct();
    if !plain.is_empty() {
        writeln!(
            md,
            "| {method} (plain) | the study's `{table}` | {} | {} | {} | {} | — | — |",
            plain.len(),
            cell(method, Measure::Clean),
            cell(method, Measure::Pgd),
            cell(method, Measure::Worst)
        )?;
    }
    for v in rows {
        let own = by_seed(recs, v, d, |r| r.measure(head));
        let diff = paired(&own, &plain);
        let next = match diff.n {
            0 => format!("waits for plain {label}'s record"),
            1 if diff.mean > 0.0 => format!("above plain {label}: seeds 1 and 2 follow"),
            1 => format!("not above plain {label}: not followed up"),
            _ => format!("above plain {label}: {}", crate::decide::beats(&diff)),
        };
        writeln!(
            md,
            "| {v} | {} | {} | {} | {} | {} | {} | {next} |",
            changed(spec, v),
            own.len(),
            cell(v, Measure::Clean),
            cell(v, Measure::Pgd),
            cell(v, Measure::Worst),
            diff.pct_ci()
        )?;
    }
    md += "\n";
    Ok(md)
}

/// A method's name in prose (`AWT`, `SNIP`), as the ablation tables write it.
pub(super) fn prose(method: &str) -> &str {
    ABLATED.iter().find(|(m, _)| *m == method).map_or(method, |(_, label)| label)
}

/// The plain method of an ablation that did not beat it at its first seed (worst-case robust
/// accuracy, as the plan decides follow-ups): such a variant earns no more seeds, so it is out of the
/// running, not undecided. `None` for a method itself or a variant still in the running.
pub(super) fn not_followed_up(recs: &[Rec], v: &str, d: f64) -> Option<&'static str> {
    let plain = plain_of(v)?;
    let first = paired(
        &by_seed(recs, v, d, |r| r.measure(Measure::Worst)),
        &by_seed(recs, plain, d, |r| r.measure(Measure::Worst)),
    );
    (first.n == 1 && first.mean <= 0.0).then_some(plain)
}

/// A candidate for a new named method: AWT or one of its ablations (the baselines are existing
/// methods; they are shown for reference).
fn candidate(v: &str) -> bool {
    v == "awt" || v.starts_with("awt-")
}

/// Whether any AWT variant matches the dense net at density 0.05 (docs/protocol.md §7: the lower
/// bound of its paired interval at least −1 point; not matching when the upper bound is below −1
/// point; open otherwise, and with fewer than two paired seeds); said plainly either way. The
/// baselines are decided the same way, for reference.
pub(super) fn named_method(recs: &[Rec], vs: &[String], head: Measure) -> Result<String> {
    Ok(named_method_parts(recs, vs, head)?.map(|(table, finding)| table + &finding).unwrap_or_default())
}

/// [`named_method`]'s heading and table, and its finding apart (`None` when no AWT variant is recorded).
pub(super) fn named_method_parts(recs: &[Rec], vs: &[String], head: Measure) -> Result<Option<(String, String)>> {
    let d = 0.05;
    let dense = by_seed(recs, "dense", 1.0, |r| r.measure(head));
    let rows: Vec<(&String, crate::stats::Summary)> = vs
        .iter()
        .filter(|v| *v != "dense")
        .map(|v| (v, paired(&by_seed(recs, v, d, |r| r.measure(head)), &dense)))
        .filter(|(_, s)| s.n > 0)
        .collect();
    if !rows.iter().any(|(v, _)| candidate(v)) {
        return Ok(None);
    }
    let mut md = format!(
        "### Beyond the paper: does an AWT variant match the dense net at density {d}?\n\n\
Decided by the one rule of docs/protocol.md §7: a ticket matches the dense net when the 95 % interval of its paired \
difference to the dense net's robust accuracy (the headline measure above) has its lower bound at or above −1 point, \
and does not when its upper bound is below −1 point; otherwise, and with fewer than two paired seeds, it is open. \
These are exploratory rows (selected on the test set, first study; no correction for the number of candidates). \
AWT and its ablations are the candidates for a new named method; the baselines are decided the same way for reference.\n\n\
| ticket | candidate | paired seeds | − dense, robust (points) [95 % CI] | matches the dense net? |\n|---|---|---|---|---|\n"
    );
    let mut o = Outcomes::default();
    for (v, s) in &rows {
        let verdict = verdict(recs, v, s, d, &mut o);
        let cand = if candidate(v) { "yes" } else { "baseline" };
        writeln!(md, "| {v} | {cand} | {} | {} | {verdict} |", s.n, s.pct_ci())?;
    }
    md += "\n";
    Ok(Some((md, finding(&o, d)?)))
}

/// Where the candidates and baselines stand against the dense net.
#[derive(Default)]
struct Outcomes<'a> {
    /// Candidates that match the dense net.
    matched: Vec<&'a str>,
    /// Baselines that match it.
    others: Vec<&'a str>,
    /// Candidates that do not match it, with their interval.
    short: Vec<String>,
    /// Candidates not followed up (not above their plain method at the first seed).
    dropped: Vec<&'a str>,
    /// Candidates still open (the interval straddles −1 point, or fewer than two seeds).
    open: usize,
}

/// The verdict on variant `v` (paired difference `s` to the dense net at density `d`), noted in `o`.
fn verdict<'a>(recs: &[Rec], v: &'a str, s: &crate::stats::Summary, d: f64, o: &mut Outcomes<'a>) -> String {
    let cand = candidate(v);
    match crate::decide::matches(s) {
        "holds" => {
            if cand {
                o.matched.push(v)
            } else {
                o.others.push(v)
            }
            "**yes**: the lower bound is at or above −1 point".to_string()
        }
        "does **not** hold" => {
            if cand {
                o.short.push(format!("{v} ({})", s.pct_ci()));
            }
            "no: the upper bound is below −1 point".to_string()
        }
        _ if s.n >= 2 => {
            o.open += usize::from(cand);
            "open: the interval straddles −1 point".to_string()
        }
        _ => match not_followed_up(recs, v, d) {
            Some(plain) => {
                if cand {
                    o.dropped.push(v);
                }
                format!("no: not above plain {} at its first seed, so not run at more", prose(plain))
            }
            None => {
                o.open += usize::from(cand);
                "open: fewer than two paired seeds".into()
            }
        },
    }
}

/// "a, b match" / "a matches".
fn they(names: &[&str], verb: (&str, &str)) -> String {
    format!("{} {}", names.join(", "), if names.len() == 1 { verb.0 } else { verb.1 })
}

/// The finding: which candidates match the dense net, or why none does, or what is still open.
fn finding(o: &Outcomes, d: f64) -> Result<String> {
    let Outcomes { matched, others, short, dropped, open } = o;
    let open = *open;
    let baselines = if others.is_empty() {
        String::new()
    } else {
        let too = if o.matched.is_empty() { "" } else { " too" };
        format!(" Of the baselines, {} it{too} (existing methods, not new ones).", they(others, ("matches", "match")))
    };
    let short_names: Vec<&str> = short.iter().map(String::as_str).collect();
    let mut finding = String::new();
    if !matched.is_empty() {
        writeln!(
            finding,
            "**Finding.** {} the dense net's robust accuracy at density {d} (lower bound at or above −1 point) — the \
             candidate{} for a named method.{baselines}\n",
            they(matched, ("matches", "match")),
            if matched.len() == 1 { "" } else { "s" }
        )?;
    } else if open == 0 {
        let mut why = Vec::new();
        if !short.is_empty() {
            why.push(format!("{} below −1 point by the whole interval", they(&short_names, ("falls", "fall"))));
        }
        if !dropped.is_empty() {
            why.push(format!("{} not above plain AWT at the first seed", they(dropped, ("was", "were"))));
        }
        writeln!(
            finding,
            "**Finding.** No AWT variant matches the dense net's robust accuracy at density {d}: {}, so there is no new \
             named method.{baselines}\n",
            why.join("; ")
        )?;
    } else {
        let fallen = if short.is_empty() {
            String::new()
        } else {
            format!("{}; ", they(&short_names, ("does not match", "do not match")))
        };
        writeln!(
            finding,
            "**Finding.** No AWT variant is shown to match the dense net at density {d}: {fallen}{open} AWT variant{} \
             open (the interval straddles −1 point, or fewer than two seeds).{baselines}\n",
            if open == 1 { " is" } else { "s are" }
        )?;
    }
    Ok(finding)
}
