//! The IDX reader (raw and gzip) on arbitrary bytes: errors are fine, panics, hangs and allocations
//! beyond the input's legitimate size are not. Also with the dimensions a registered file must have.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = Path::new("fuzz-idx");
    if let Ok(idx) = awt_data::idx::parse(data, p) {
        assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
    }
    let _ = awt_data::idx::parse_expecting(data, p, Some(&[60000, 28, 28]));
});
