//! The CIFAR-10 binary batch reader on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = awt_data::cifar::parse(data, std::path::Path::new("fuzz-cifar")) {
        assert_eq!(s.images.len(), s.len() * 3 * 32 * 32);
        assert!(s.labels.iter().all(|&l| l < 10));
    }
});
