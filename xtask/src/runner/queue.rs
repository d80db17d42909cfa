//! A grid's work queue: the runs in plan order, re-planned whenever a run is recorded, so that the
//! follow-up runs an ablation earns join the sitting that earned them (no restart needed).

use std::collections::HashSet;

use crate::plan::{Run, fnv};

/// The runs of a plan not yet taken by a worker.
pub(super) struct Queue {
    plan: Vec<Run>,
    taken: HashSet<String>,
}

impl Queue {
    pub(super) fn new(plan: Vec<Run>) -> Queue {
        Queue { plan, taken: HashSet::new() }
    }

    /// The first run of the plan no worker has taken for which `ok` holds, with its position in the
    /// plan and the plan's length; it counts as taken from now on.
    pub(super) fn next_where(&mut self, ok: impl Fn(&Run) -> bool) -> Option<(usize, usize, Run)> {
        let (k, run) = self.plan.iter().enumerate().find(|(_, r)| !self.taken.contains(&r.name) && ok(r))?;
        self.taken.insert(run.name.clone());
        Some((k, self.plan.len(), run.clone()))
    }

    /// The runs of the plan no worker has taken yet.
    pub(super) fn untaken(&self) -> Vec<Run> {
        self.plan.iter().filter(|r| !self.taken.contains(&r.name)).cloned().collect()
    }

    /// Replaces the plan with `fresh` (runs already taken are not run again); returns the names
    /// of the runs that joined.
    pub(super) fn replan(&mut self, fresh: Vec<Run>) -> Vec<String> {
        let old: HashSet<&str> = self.plan.iter().map(|r| r.name.as_str()).collect();
        let joined = fresh.iter().filter(|r| !old.contains(r.name.as_str())).map(|r| r.name.clone()).collect();
        self.plan = fresh;
        joined
    }

    /// The plan as it stands at the end.
    pub(super) fn into_plan(self) -> Vec<Run> {
        self.plan
    }
}

/// Reorders a plan so that the runs whose name contains `patterns[0]` come first, then those of
/// `patterns[1]`, ..., then the rest; each group keeps the plan's order. Applied to every re-plan
/// too, so the order holds while follow-ups join (`--first`: decide the question that matters most
/// before the rest of a long grid).
pub(super) fn put_first(plan: &mut [Run], patterns: &[String]) {
    plan.sort_by_key(|r| patterns.iter().position(|p| r.name.contains(p.as_str())).unwrap_or(patterns.len()));
}

/// Whether `run` belongs to shard `i` of `n`: decided by its name's hash, so a run stays in the same
/// shard however the plan around it grows (earned follow-ups join between other runs).
pub(super) fn in_shard(run: &Run, (i, n): (usize, usize)) -> bool {
    let h = u64::from_str_radix(&fnv(&run.name), 16).expect("fnv gives 16 hex digits");
    h % n as u64 == i as u64
}

/// `--only NAME,...`: the runs with exactly these names (a command printed by `--list` runs its
/// own run and no other; a substring match let `...-s1` also run `...-s10`).
pub(super) fn only(runs: &mut Vec<Run>, names: &str) {
    let wanted: Vec<&str> = names.split(',').map(str::trim).collect();
    runs.retain(|r| wanted.contains(&r.name.as_str()));
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn runs(names: &[&str]) -> Vec<Run> {
        names
            .iter()
            .map(|n| Run {
                name: n.to_string(),
                dir: Path::new("/nowhere").join(n),
                arch: "lenet-300-100".into(),
                method: awt_runs::Method::Awt,
                density: awt_runs::Density::new(0.05).unwrap(),
                seed: 0,
                canonical: n.to_string(),
                flags: Vec::new(),
                dense_dir: None,
                rewind_from: None,
                pretrained_from: None,
            })
            .collect()
    }

    /// A run that joins the plan is taken in its plan position, before the later runs; taken runs
    /// never come back; positions and totals follow the current plan.
    #[test]
    fn runs_that_join_the_plan_are_taken_in_plan_order_and_nothing_runs_twice() {
        let mut q = Queue::new(runs(&["a-s0", "b-s0", "a-s1", "b-s1"]));
        assert_eq!(q.next_where(|_| true).map(|(k, n, r)| (k, n, r.name)), Some((0, 4, "a-s0".into())));
        assert_eq!(q.next_where(|_| true).map(|(k, n, r)| (k, n, r.name)), Some((1, 4, "b-s0".into())));
        let joined = q.replan(runs(&["a-s0", "b-s0", "a-s1", "x-s1", "b-s1"]));
        assert_eq!(joined, vec!["x-s1".to_string()]);
        let rest: Vec<(usize, usize, String)> =
            std::iter::from_fn(|| q.next_where(|_| true)).map(|(k, n, r)| (k, n, r.name)).collect();
        assert_eq!(rest, vec![(2, 5, "a-s1".into()), (3, 5, "x-s1".into()), (4, 5, "b-s1".into())]);
        assert!(q.replan(runs(&["a-s0", "x-s1"])).is_empty());
        assert!(q.next_where(|_| true).is_none(), "every run of the plan was taken");
        assert_eq!(q.into_plan().len(), 2);
    }

    /// `--only` takes exact names: a run whose name contains the given one is not taken.
    #[test]
    fn only_takes_runs_by_their_exact_names() {
        let mut plan = runs(&["net-awt-d0.05-s1", "net-awt-d0.05-s10", "net-ntt-d0.05-s1"]);
        only(&mut plan, "net-awt-d0.05-s1");
        assert_eq!(plan.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["net-awt-d0.05-s1"]);
        let mut plan = runs(&["net-awt-d0.05-s1", "net-awt-d0.05-s10", "net-ntt-d0.05-s1"]);
        only(&mut plan, "net-ntt-d0.05-s1, net-awt-d0.05-s10");
        assert_eq!(plan.len(), 2);
        let mut plan = runs(&["net-awt-d0.05-s1"]);
        only(&mut plan, "awt");
        assert!(plan.is_empty());
    }

    /// `--within`: a run that does not fit is passed over, not taken, and the next one that fits
    /// is taken; with none fitting nothing is taken.
    #[test]
    fn runs_that_do_not_fit_are_passed_over_and_stay_untaken() {
        let mut q = Queue::new(runs(&["long-s0", "short-s0", "long-s1"]));
        let short = |r: &Run| r.name.starts_with("short");
        assert_eq!(q.next_where(short).map(|(k, _, r)| (k, r.name)), Some((1, "short-s0".into())));
        assert!(q.next_where(short).is_none());
        let names: Vec<String> = q.untaken().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["long-s0", "long-s1"]);
    }

    /// `--first`: the first pattern's runs, then the second's, then the rest, each group in plan
    /// order; a run matching two patterns goes with the first; no pattern leaves the plan as it is.
    #[test]
    fn runs_put_first_keep_their_order_within_each_group() {
        let names = |p: &[Run]| p.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let plan = runs(&["dense-s1", "awt-s1", "awt-ker-s1", "dense-s2", "awt-s2", "awt-ker-s2"]);
        let mut p = plan.clone();
        put_first(&mut p, &["awt-ker".into(), "dense".into()]);
        assert_eq!(names(&p), ["awt-ker-s1", "awt-ker-s2", "dense-s1", "dense-s2", "awt-s1", "awt-s2"]);
        let mut p = plan.clone();
        put_first(&mut p, &["awt".into(), "awt-ker".into()]);
        assert_eq!(names(&p), ["awt-s1", "awt-ker-s1", "awt-s2", "awt-ker-s2", "dense-s1", "dense-s2"]);
        let mut p = plan.clone();
        put_first(&mut p, &[]);
        assert_eq!(names(&p), names(&plan));
    }

    /// Every run is in exactly one shard, the same one whatever else the plan holds, and a real
    /// plan spreads over every shard.
    #[test]
    fn a_runs_shard_depends_on_its_name_alone() {
        let spec = crate::spec::load("study").unwrap();
        let plan = crate::plan::expand(&spec, "fashion-mnist", Path::new("/nowhere"), &|_, _| None).unwrap();
        let n = 4;
        let mut sizes = [0usize; 4];
        for r in &plan {
            let shards: Vec<usize> = (0..n).filter(|&i| in_shard(r, (i, n))).collect();
            assert_eq!(shards.len(), 1, "{}: in shards {shards:?}", r.name);
            sizes[shards[0]] += 1;
            let alone = &runs(&[r.name.as_str()])[0];
            assert!(in_shard(alone, (shards[0], n)), "{}: its shard moved with the plan", r.name);
        }
        assert!(sizes.iter().all(|&s| s * 2 * n > plan.len()), "shards of {} runs: {sizes:?}", plan.len());
    }
}
