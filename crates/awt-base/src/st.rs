//! A deterministic safetensors writer: tensors sorted by name and metadata sorted by key, so two
//! saves of the same values are byte-identical (the `safetensors` crate takes metadata as a
//! `HashMap`, whose iteration order is random).

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

/// JSON string literal with the escapes JSON requires.
fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Serialises tensors (in the given order; pass them sorted by name) and metadata (sorted by key) in the safetensors format.
/// Written by hand rather than with `safetensors::serialize` because that takes the metadata as a
/// `HashMap`, whose random order would make two saves of the same network differ byte for byte.
pub fn safetensors_bytes(
    tensors: &[(String, Tensor)],
    meta: &BTreeMap<String, String>,
) -> candle_core::Result<Vec<u8>> {
    let mut header = String::from("{");
    let mut parts = Vec::new();
    if !meta.is_empty() {
        let m: Vec<String> = meta.iter().map(|(k, v)| format!("{}:{}", json_str(k), json_str(v))).collect();
        parts.push(format!("\"__metadata__\":{{{}}}", m.join(",")));
    }
    let mut data = Vec::new();
    for (name, t) in tensors {
        let (dtype, bytes): (&str, Vec<u8>) = match t.dtype() {
            DType::F32 => ("F32", t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            DType::F64 => ("F64", t.flatten_all()?.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            // Masks and weights are always f32 or f64 here; anything else is stored as f32.
            _ => (
                "F32",
                t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        };
        let shape: Vec<String> = t.dims().iter().map(|d| d.to_string()).collect();
        parts.push(format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_str(name),
            shape.join(","),
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(&bytes);
    }
    header.push_str(&parts.join(","));
    header.push('}');
    // The format pads the header with spaces to a multiple of 8 bytes.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}
