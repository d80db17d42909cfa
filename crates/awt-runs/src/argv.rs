//! [`Argv`]: one way to build an `awt` command line — a subcommand, then flags with their values
//! as they print (`Display`), so numbers are written once, the same way everywhere.

use std::fmt::Display;

/// An `awt` command line under construction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Argv(Vec<String>);

impl Argv {
    /// `awt <command>`.
    pub fn new(command: &str) -> Argv {
        Argv(vec![command.to_string()])
    }

    /// No subcommand: flags to be appended to another command line.
    pub fn flags() -> Argv {
        Argv(Vec::new())
    }

    /// `--name value`.
    pub fn flag(mut self, name: &str, value: impl Display) -> Argv {
        self.0.push(name.to_string());
        self.0.push(value.to_string());
        self
    }

    /// `--name value` where there is a value.
    pub fn flag_opt(self, name: &str, value: Option<impl Display>) -> Argv {
        match value {
            Some(v) => self.flag(name, v),
            None => self,
        }
    }

    /// `--name` (a switch without value).
    pub fn switch(mut self, name: &str) -> Argv {
        self.0.push(name.to_string());
        self
    }

    /// A positional argument (`awt inspect <model>`).
    pub fn arg(mut self, value: impl Display) -> Argv {
        self.0.push(value.to_string());
        self
    }

    /// These arguments appended.
    pub fn then(mut self, more: Argv) -> Argv {
        self.0.extend(more.0);
        self
    }

    /// An ablation's flags (name without dashes, value) replacing the value of a flag already
    /// given, or joining the line.
    pub fn ablated(mut self, flags: &[(String, String)]) -> Argv {
        for (flag, value) in flags {
            let name = format!("--{flag}");
            match self.0.iter().position(|a| *a == name) {
                Some(i) => self.0[i + 1] = value.clone(),
                None => self.0.extend([name, value.clone()]),
            }
        }
        self
    }

    /// `--name` and its value taken out (unchanged where it is not given).
    pub fn without(mut self, name: &str) -> Argv {
        if let Some(i) = self.0.iter().position(|a| a == name) {
            self.0.drain(i..(i + 2).min(self.0.len()));
        }
        self
    }

    /// The value given for `--name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }

    /// The arguments.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// The arguments, borrowed.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_their_values_and_ablations_replace_or_join() {
        let a = Argv::new("ticket")
            .flag("--lr", 0.0005)
            .flag("--steps", 100usize)
            .flag_opt("--wd", None::<f64>)
            .flag_opt("--schedule", Some("cosine"))
            .switch("--quiet")
            .ablated(&[("steps".into(), "400".into()), ("weights".into(), "rewind".into())]);
        assert_eq!(
            a.as_slice(),
            ["ticket", "--lr", "0.0005", "--steps", "400", "--schedule", "cosine", "--quiet", "--weights", "rewind"]
        );
        assert_eq!((a.value("--steps"), a.value("--wd")), (Some("400"), None));
        let b = a.without("--steps").without("--wd");
        assert_eq!(
            b.as_slice(),
            ["ticket", "--lr", "0.0005", "--schedule", "cosine", "--quiet", "--weights", "rewind"]
        );
    }
}
