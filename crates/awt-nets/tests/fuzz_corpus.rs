//! Replays the checkpoint loader's fuzz corpus (`fuzz/corpus/checkpoint/`) and past crash inputs
//! (`fuzz/regressions/checkpoint/`): each loads or is refused with an error, never a panic.

use std::path::Path;

use candle_core::{DType, Device};

#[test]
fn checkpoint_corpus_replays_without_panics() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mlp = awt_nets::Arch::Mlp(vec![4, 3, 2]);
    let (mut seen, mut loaded) = (0, 0);
    for sub in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(sub).join("checkpoint")) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            seen += 1;
            for arch in [None, Some(&mlp)] {
                if awt_nets::load_bytes(&b, &p, arch, DType::F32, &Device::Cpu).is_ok() {
                    loaded += 1;
                }
            }
        }
    }
    assert!(seen >= 3 && loaded > 0, "the checkpoint corpus is missing ({seen} inputs, {loaded} loaded)");
}
