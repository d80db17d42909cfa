//! The safetensors checkpoint loader on arbitrary bytes, with and without a named architecture
//! (a foreign state dict needs one).
#![no_main]

use candle_core::{DType, Device};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.safetensors");
    let mlp = awt_nets::Arch::Mlp(vec![4, 3, 2]);
    for arch in [None, Some(&mlp)] {
        if let Ok(l) = awt_nets::load_bytes(data, p, arch, DType::F32, &Device::Cpu) {
            // Whatever loads is a usable network: finite weights, 0/1 masks of the right shapes.
            assert!(l.net.densities().is_ok());
        }
    }
});
