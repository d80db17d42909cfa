//! The NTK's custom CPU ops, each with a hand-written backward checked against an autograd
//! formulation: kernel-block scaling and accumulation ([`blocks`]), and the masked linear layer's
//! kernel contraction and input Gram ([`masked`]), and the masked convolution's per-example
//! gradients at the kept weights ([`conv`]).

mod blocks;
mod conv;
mod masked;

pub(crate) use blocks::{AddBlockDiag, ScaleBlocksAdd};
pub(crate) use conv::{KeptConvGrad, PerExampleGrad};
pub(crate) use masked::{MaskedGram, MaskedPair};
