//! The Hugging Face hub parquet reader (parquet + PNG decoding) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The reader turns a panic of the parquet crate into an error (`catch_unwind`); libfuzzer-sys's
    // hook would abort on any panic, caught or not, so it is replaced by a silent one. A panic that
    // escapes the reader still reaches libfuzzer-sys's own catch_unwind and aborts: a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if let Ok(s) = awt_data::hf::read_bytes(data.to_vec(), std::path::Path::new("fuzz.parquet")) {
        assert_eq!(s.images.len(), s.len() * s.image_size());
        assert!(s.labels.iter().all(|&l| l < 10));
    }
});
