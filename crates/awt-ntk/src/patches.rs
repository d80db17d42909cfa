//! The NTK's custom ops live in `awt-base` (the stage forward pass uses im2col too).

pub(crate) use awt_base::patches::{AddBlockDiag, MaskedGram, MaskedPair, ScaleBlocksAdd, conv_signal, im2col};
