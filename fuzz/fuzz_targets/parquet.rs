//! The Hugging Face hub parquet reader (parquet + PNG decoding) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = awt_data::hf::read_bytes(data.to_vec(), std::path::Path::new("fuzz.parquet")) {
        assert_eq!(s.images.len(), s.len() * s.image_size());
        assert!(s.labels.iter().all(|&l| l < 10));
    }
});
