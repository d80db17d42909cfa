//! What a model file's metadata says of how it was made, read from its header alone.

use std::path::Path;

/// Says on stderr when `--model`'s training, as its metadata records it (`trained`, which `awt
/// train` writes into the model it trains, or `epoch`, which its epoch checkpoints carry), is not
/// what `method` works on: a method at
/// initialisation (or AWT's teacher) given a trained net, or HYDRA or an IMP round's magnitude
/// given an initialisation. Both run (pruning a trained net by SNIP's score is an experiment one
/// may want), but neither is the method as published, and nothing else would say so. Unreadable
/// metadata says nothing: the load that follows reports the file.
pub(crate) fn warn_on_training(model: &Path, method: &str, wants_trained: bool) {
    let meta = crate::files::safetensors_metadata(model);
    let key = |k: &str| meta.as_ref().and_then(|m| m.get(k)?.as_str().map(String::from));
    // A run's final model says how it was trained; an epoch checkpoint (`--keep-epochs`), its epoch.
    let epoch = key("epoch").and_then(|e| e.parse::<u64>().ok()).filter(|&e| e > 0);
    let trained = key("trained").or(epoch.map(|e| format!("epoch {e} of a training run")));
    match (trained, wants_trained) {
        (Some(t), false) => eprintln!(
            "warning: --model {} is a trained net ({t}), but {method} works on an initialisation: this is \
             not {method} as published",
            model.display()
        ),
        (None, true) => eprintln!(
            "warning: --model {} records no training (no `trained` or `epoch` in its metadata), but {method} \
             prunes a trained net: this is not {method} as published",
            model.display()
        ),
        _ => {}
    }
}
