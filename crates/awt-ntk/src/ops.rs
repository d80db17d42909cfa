//! The NTK's custom CPU ops, each with a hand-written backward checked against an autograd
//! formulation: kernel-block scaling and accumulation ([`blocks`]), and the masked linear layer's
//! kernel contraction and input Gram ([`masked`]).

mod blocks;
mod masked;

pub(crate) use blocks::{AddBlockDiag, ScaleBlocksAdd};
pub(crate) use masked::{MaskedGram, MaskedPair};
