//! Which choice reads which flag: the flags of an `awt` command that only some values of another
//! flag (the *selector*: `--method`, `--adv`, `--attack`, …) read. Given with any other value they
//! would be dropped without a word — `--milestones 10,20` without `--schedule multistep` trains at
//! a constant rate — so the binary refuses them ([`unread`]), and xtask's command builders leave
//! out what the preset's choice does not read ([`reads`]). One table serves both.

/// A flag that only some values of its command's selector read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The subcommand (`train`).
    pub command: &'static str,
    /// The flag (`--beta`).
    pub flag: &'static str,
    /// The flag whose value decides (`--adv`).
    pub selector: &'static str,
    /// The values of the selector that read the flag (`trades`).
    pub readers: &'static [&'static str],
}

const HYDRA_IMP: &[&str] = &["hydra", "imp-at"];
/// `awt eval` attacks that run PGD (`worst` starts with it).
const PGD: &[&str] = &["pgd", "worst"];
/// `awt eval` attacks that run one of the APGD family.
const APGD: &[&str] = &["apgd-ce", "apgd-dlr", "worst", "apgd-t", "autoattack", "autoattack-fast"];

const fn read(
    command: &'static str,
    flag: &'static str,
    selector: &'static str,
    readers: &'static [&'static str],
) -> Read {
    Read { command, flag, selector, readers }
}

/// Every flag read by some choices only. Not listed: flags every choice reads, and `awt prune`'s
/// `--batch` and `--rounds` (xtask passes both to every mask at initialisation).
pub const READS: &[Read] = &[
    read("prune", "--hydra-epochs", "--method", &["hydra"]),
    read("prune", "--hydra-lr", "--method", &["hydra"]),
    read("prune", "--imp-rounds", "--method", &["imp-at"]),
    read("prune", "--imp-epochs", "--method", &["imp-at"]),
    read("prune", "--eps", "--method", HYDRA_IMP),
    read("prune", "--attack-steps", "--method", HYDRA_IMP),
    read("prune", "--step-size", "--method", HYDRA_IMP),
    read("prune", "--train-limit", "--method", HYDRA_IMP),
    read("prune", "--ntk-sap-rounds", "--method", &["ntk-sap"]),
    read("prune", "--ntk-sap-draws", "--method", &["ntk-sap"]),
    read("prune", "--ntk-sap-inputs", "--method", &["ntk-sap"]),
    read("prune", "--ntk-sap-eps", "--method", &["ntk-sap"]),
    // NTT matches on clean inputs: it runs no attack.
    read("ticket", "--eps", "--method", &["awt"]),
    read("ticket", "--attack-steps", "--method", &["awt"]),
    read("ticket", "--attack-step-size", "--method", &["awt"]),
    read("ticket", "--adv-source", "--method", &["awt"]),
    read("ticket", "--inputs", "--method", &["awt"]),
    // Training's attack (its --eps is also the per-epoch evaluation's, so every objective reads it).
    read("train", "--steps", "--adv", &["pgd", "trades"]),
    read("train", "--step-size", "--adv", &["pgd", "fgsm", "trades"]),
    read("train", "--beta", "--adv", &["trades"]),
    read("train", "--momentum", "--opt", &["sgd"]),
    read("train", "--nesterov", "--opt", &["sgd"]),
    read("train", "--gamma", "--schedule", &["multistep"]),
    read("train", "--milestones", "--schedule", &["multistep"]),
    read("train", "--warmup", "--schedule", &["onecycle"]),
    read("eval", "--steps", "--attack", PGD),
    read("eval", "--step-size", "--attack", PGD),
    read("eval", "--loss", "--attack", &["fgsm", "pgd", "worst"]),
    read("eval", "--apgd-steps", "--attack", APGD),
    read(
        "eval",
        "--restarts",
        "--attack",
        &["pgd", "apgd-ce", "apgd-dlr", "worst", "apgd-t", "autoattack", "autoattack-fast"],
    ),
    read("eval", "--targets", "--attack", &["apgd-t", "fab-t", "autoattack", "autoattack-fast"]),
    read("eval", "--fab-steps", "--attack", &["fab-t", "autoattack"]),
    read("eval", "--square-queries", "--attack", &["square", "autoattack"]),
];

/// The entries of `command`.
pub fn of(command: &str) -> impl Iterator<Item = &'static Read> + '_ {
    READS.iter().filter(move |r| r.command == command)
}

/// Does `awt <command>` read `flag` when its selector is `value`? (Flags not in [`READS`] are read
/// by every choice.)
pub fn reads(command: &str, flag: &str, value: &str) -> bool {
    of(command).find(|r| r.flag == flag).is_none_or(|r| r.readers.contains(&value))
}

/// The refusal for `flag` given to `awt <command>` with its selector at `value`, or `None` where
/// that value reads it: "--beta is not read by --adv pgd: only by trades".
pub fn unread(command: &str, flag: &str, value: &str) -> Option<String> {
    let r = of(command).find(|r| r.flag == flag)?;
    (!r.readers.contains(&value))
        .then(|| format!("{flag} is not read by {} {value}: only by {}", r.selector, r.readers.join(" and ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_is_read_by_its_readers_only_and_unlisted_flags_by_every_choice() {
        assert!(reads("train", "--beta", "trades") && !reads("train", "--beta", "pgd"));
        assert!(reads("train", "--epochs", "none"), "not listed: read by every objective");
        assert!(!reads("eval", "--steps", "autoattack") && reads("eval", "--apgd-steps", "autoattack"));
        assert_eq!(unread("train", "--beta", "trades"), None);
        assert_eq!(
            unread("train", "--beta", "pgd").as_deref(),
            Some("--beta is not read by --adv pgd: only by trades")
        );
        assert_eq!(
            unread("prune", "--step-size", "random").as_deref(),
            Some("--step-size is not read by --method random: only by hydra and imp-at")
        );
    }

    #[test]
    fn each_flag_is_listed_once_per_command_with_one_selector() {
        for (i, r) in READS.iter().enumerate() {
            assert!(!r.readers.is_empty(), "{} {}: no reader", r.command, r.flag);
            let twice = READS[..i].iter().any(|s| (s.command, s.flag) == (r.command, r.flag));
            assert!(!twice, "{} {} listed twice", r.command, r.flag);
        }
    }
}
