//! The achieved-GFLOP/s column of the side-by-side table: the GEMM-shaped work of each benchmarked
//! hot path, counted from the layer shapes.

/// Multiply-adds ×2 of the hot paths at batch 128 (f32), for the achieved-GFLOP/s column: from the
/// layer shapes, counting only the GEMM-shaped work (convolutions as im2col products).
pub(super) fn gflop(net: &str, measure: &str) -> Option<f64> {
    // (flops of each weighted layer's forward product, in order)
    let layers: Vec<f64> = match net {
        "lenet-300-100" => vec![784.0 * 300.0, 300.0 * 100.0, 100.0 * 10.0],
        "lenet5-caffe" => vec![20.0 * 25.0 * 576.0, 50.0 * 500.0 * 64.0, 800.0 * 500.0, 500.0 * 10.0],
        _ => return None,
    };
    let fwd: f64 = layers.iter().sum::<f64>() * 2.0 * 128.0;
    let first = layers[0] * 2.0 * 128.0;
    let total = match measure {
        // forward, then the input gradient through every layer
        "pgd_step" => 2.0 * fwd,
        // forward, every weight gradient, input gradients of all but the first layer
        "fwd_bwd" => 3.0 * fwd - first,
        // a probe (forward and input gradient) at the random start and after each of the 100 steps
        // but the last, which is a forward only
        "apgd_ce100" => 101.0 * 2.0 * fwd - fwd,
        _ => return None,
    };
    Some(total / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_counts_follow_the_layer_shapes() {
        // LeNet-300-100: 266 200 multiply-adds per image forward; the PGD step is forward + input
        // gradient (the figure the speed issue quotes: 136 MFLOP at batch 128).
        assert!((gflop("lenet-300-100", "pgd_step").unwrap() - 0.1363).abs() < 1e-3);
        assert!(gflop("lenet-300-100", "fwd_bwd").unwrap() > gflop("lenet-300-100", "pgd_step").unwrap());
        assert!(gflop("resnet", "pgd_step").is_none());
        // APGD-CE: 100 probes with their input gradient and a last forward, 100 PGD steps' work.
        let apgd = gflop("lenet5-caffe", "apgd_ce100").unwrap() / gflop("lenet5-caffe", "pgd_step").unwrap();
        assert!((apgd - 100.5).abs() < 1e-9, "{apgd}");
    }
}
