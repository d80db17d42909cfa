//! Writes the seed corpora of the fuzz targets from real files: the first images of the embedded
//! Fashion-MNIST subset (raw and gzip IDX, and as a hub parquet file), CIFAR-10-format records made
//! from them, and awt checkpoints (dense, masked, foreign). Run from `fuzz/`:
//! `cargo +nightly run --example seeds`.

use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn main() {
    let ds = awt_data::load("fashion-mnist-mini", &awt_data::LoadOptions::offline_embedded_only()).unwrap();
    let few = ds.train.subset(0, 3).unwrap();
    let images = awt_data::idx::encode(&[3, 28, 28], &few.images);
    let labels = awt_data::idx::encode(&[3], &few.labels);
    put("idx", "images-raw", &images);
    put("idx", "images-gz", &gz(&images));
    put("idx", "labels-raw", &labels);
    put("idx", "labels-gz", &gz(&labels));
    // CIFAR-10 records: label byte + 3 × 1024 pixels (the 28×28 images padded to 32×32, 3 channels).
    let mut cifar = Vec::new();
    for i in 0..2 {
        cifar.push(few.labels[i]);
        let mut plane = vec![0u8; 1024];
        for y in 0..28 {
            plane[y * 32..y * 32 + 28].copy_from_slice(&few.images[i * 784 + y * 28..i * 784 + y * 28 + 28]);
        }
        for _ in 0..3 {
            cifar.extend_from_slice(&plane);
        }
    }
    put("cifar", "two-records", &cifar);
    let tmp = std::env::temp_dir().join(format!("awt-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let pq = tmp.join("a.parquet");
    awt_data::hf::write(&few, "image", &pq).unwrap();
    put("parquet", "gray", &std::fs::read(&pq).unwrap());
    // Checkpoints: dense, masked, and a foreign state dict without metadata.
    let arch = awt_nets::Arch::Mlp(vec![4, 3, 2]);
    let mut net = awt_nets::Net::init(&arch, awt_nets::Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
    let ck = tmp.join("c.safetensors");
    awt_nets::save(&net, &ck).unwrap();
    put("checkpoint", "dense", &std::fs::read(&ck).unwrap());
    let m = Tensor::from_vec(vec![1f32, 0., 1., 0., 1., 1., 0., 0., 1., 1., 1., 0.], (3, 4), &Device::Cpu).unwrap();
    net.set_mask("fc1.weight", &m).unwrap();
    awt_nets::save(&net, &ck).unwrap();
    put("checkpoint", "masked", &std::fs::read(&ck).unwrap());
    net.clear_masks();
    net.meta.clear();
    awt_nets::save(&net, &ck).unwrap();
    put("checkpoint", "foreign", &std::fs::read(&ck).unwrap());
    std::fs::remove_dir_all(&tmp).unwrap();
}
