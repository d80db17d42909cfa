//! [`Method`]: every way a run obtains its network, with the properties the pipeline branches on.
//! Adding a method is one variant here (its name, its [`TicketRecipe`], the ablation flags it
//! accepts) plus its implementation in the library and the binary.

use std::fmt;
use std::str::FromStr;

/// How a method makes the ticket (`ticket.safetensors`) from the initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketRecipe {
    /// No ticket: the dense net trains from its initialisation.
    None,
    /// A mask chosen at initialisation by a score (`awt prune --method <m>`), trained from the
    /// initial weights.
    MaskAtInit,
    /// The NTT/AWT search at initialisation (`awt ticket`).
    Search,
    /// Iterative magnitude pruning with adversarial training and rewinding (`awt prune --method imp-at`).
    ImpAt,
    /// HYDRA: adversarial pretraining, then score optimisation (`awt prune --method hydra`).
    Hydra,
}

/// A method a preset may list. The declaration order is the order reports show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The dense net (density 1).
    Dense,
    /// Uniformly random mask at initialisation.
    Random,
    /// Largest initial weights.
    Magnitude,
    /// SNIP (connection sensitivity).
    Snip,
    /// GraSP (gradient signal preservation).
    Grasp,
    /// SynFlow (iterative synaptic flow).
    Synflow,
    /// NTK-SAP (the mask gradient of an estimate of the NTK's trace, iterative, data-free).
    NtkSap,
    /// Neural Tangent Transfer: match the dense net's outputs and NTK on clean inputs.
    Ntt,
    /// Adversarial winning tickets: match them on adversarial inputs.
    Awt,
    /// Lottery tickets by iterative magnitude pruning under adversarial training.
    ImpAt,
    /// HYDRA.
    Hydra,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 11] = [
        Method::Dense,
        Method::Random,
        Method::Magnitude,
        Method::Snip,
        Method::Grasp,
        Method::Synflow,
        Method::NtkSap,
        Method::Ntt,
        Method::Awt,
        Method::ImpAt,
        Method::Hydra,
    ];

    /// The name presets, run names, argv and records use.
    pub const fn name(self) -> &'static str {
        match self {
            Method::Dense => "dense",
            Method::Random => "random",
            Method::Magnitude => "magnitude",
            Method::Snip => "snip",
            Method::Grasp => "grasp",
            Method::Synflow => "synflow",
            Method::NtkSap => "ntk-sap",
            Method::Ntt => "ntt",
            Method::Awt => "awt",
            Method::ImpAt => "imp-at",
            Method::Hydra => "hydra",
        }
    }

    /// One line on what the method does (command-line help).
    pub fn about(self) -> &'static str {
        match self {
            Method::Dense => "the dense net",
            Method::Random => "uniformly random mask at initialisation",
            Method::Magnitude => "the largest initial weights",
            Method::Snip => "SNIP: connection sensitivity |g ⊙ w| on a batch",
            Method::Grasp => "GraSP: gradient signal preservation on a batch",
            Method::Synflow => "SynFlow: iterative synaptic flow, data-free",
            Method::NtkSap => {
                "NTK-SAP: iterative, the NTK trace's mask gradient over fresh initialisations and noise, data-free"
            }
            Method::Ntt => "Neural Tangent Transfer: match the dense net's outputs and NTK on clean inputs",
            Method::Awt => "adversarial winning ticket: match them on adversarial inputs",
            Method::ImpAt => "rounds of PGD-AT and magnitude pruning with rewinding (lottery tickets)",
            Method::Hydra => "HYDRA's score optimisation on an adversarially pretrained --model",
        }
    }

    /// How the method makes its ticket.
    pub const fn recipe(self) -> TicketRecipe {
        match self {
            Method::Dense => TicketRecipe::None,
            Method::Random | Method::Magnitude | Method::Snip | Method::Grasp | Method::Synflow | Method::NtkSap => {
                TicketRecipe::MaskAtInit
            }
            Method::Ntt | Method::Awt => TicketRecipe::Search,
            Method::ImpAt => TicketRecipe::ImpAt,
            Method::Hydra => TicketRecipe::Hydra,
        }
    }

    /// The names of the methods whose ticket is made by `recipe`, in report order.
    pub fn names_by(recipe: TicketRecipe) -> Vec<&'static str> {
        Method::ALL.into_iter().filter(|m| m.recipe() == recipe).map(Method::name).collect()
    }

    /// The dense net: density 1, no ticket.
    pub fn is_dense(self) -> bool {
        self == Method::Dense
    }

    /// The flags an ablation of this method may change (spec `[[ablations]] flags`). `layers-from`
    /// names a mask at initialisation of the grid (a method, or `<method>-<name>` of an ablation),
    /// whose per-layer counts the search or the score keeps (`--layer-densities-from` of `awt ticket`
    /// and `awt prune`).
    pub fn ablation_flags(self) -> &'static [&'static str] {
        match self.recipe() {
            TicketRecipe::Search => &[
                "steps",
                "lr",
                "lambda-ker",
                "lambda-l2",
                "mask-every",
                "weights",
                "inputs",
                "adv-source",
                "layers-from",
            ],
            TicketRecipe::None => &["epochs", "schedule"],
            TicketRecipe::ImpAt => &["imp-epochs", "final-epochs"],
            TicketRecipe::Hydra => &["pretrain-epochs", "hydra-epochs", "finetune-epochs"],
            TicketRecipe::MaskAtInit => &["rescale", "allocation", "shuffle", "layers-from"],
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no method, with the list of those that are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMethod(pub String);

impl fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        write!(f, "unknown method `{}`: expected one of {}", self.0, all.join(", "))
    }
}

impl std::error::Error for UnknownMethod {}

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Method, UnknownMethod> {
        Method::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownMethod(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_parse_and_serialise_alike() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<Method>(&format!("\"{m}\"")).unwrap(), m);
        }
        let e = "lth".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("unknown method `lth`") && e.contains("imp-at, hydra"), "{e}");
    }

    #[test]
    fn only_the_dense_net_has_no_ticket() {
        for m in Method::ALL {
            assert_eq!(m.is_dense(), m.recipe() == TicketRecipe::None, "{m}");
        }
    }
}
