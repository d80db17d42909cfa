#!/usr/bin/env bash
# The device check (issue 26): on a machine with a GPU, with the CUDA binary `cargo xtask gpu-build`
# made elsewhere (target/cuda/awt.xz, carried here), check that `--device cuda` computes what the CPU
# computes and time it beside PyTorch on the same GPU; then run the quick preset end to end on it.
# Sized for one 10-minute command: each phase writes its files as it finishes, and the last phase
# (the quick preset) only gets the time that is left.
#
#   scripts/gpu-check.sh            on the GPU machine (results under $OUT, else target/gpu-check)
#   scripts/gpu-check.sh --dry-run  here, with the CPU binary and --device cpu (the device side is the
#                                   CPU's device-generic path), to test the script itself
#
# What it needs where it runs: python3 with numpy and torch (for the peers, and to find the CUDA 13
# libraries torch's wheels bring: libcublas.so.13 with its libcublasLt.so.13, libcudart.so.13,
# libcurand.so.10), the NVIDIA driver (libcuda.so.1), and optionally the xtask
# binary at target/release/xtask (for the quick preset; no Rust toolchain is needed).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
budget=${GPU_CHECK_SECONDS:-540}
# Sizes (smaller for a quick dry run): test images for the robust count, timing repetitions,
# images of the timed training epoch.
n=${GPU_CHECK_N:-1000}
reps=${GPU_CHECK_REPS:-10}
epoch_n=${GPU_CHECK_EPOCH_N:-10000}
train_n=${GPU_CHECK_TRAIN_N:-10000}
preset=${GPU_CHECK_PRESET:-quick}
left() { echo $((budget - ($(date +%s) - start))); }
out=${OUT:-target/gpu-check}
mkdir -p "$out"
work=$(mktemp -d)
log() { echo "[gpu-check +$(( $(date +%s) - start ))s] $*" | tee -a "$out/gpu-check.log" >&2; }
# One step with its own time limit; a failure or a timeout is logged and the check goes on, so that
# whatever the other steps find still comes back (a GPU session is short).
step() {
    local limit=$1 name=$2
    shift 2
    local rc=0
    timeout "$limit" "$@" || rc=$?
    if (( rc != 0 )); then log "$name failed (exit $rc; 124 = over its ${limit} s)"; fi
    return 0
}

if [[ "${1:-}" == "--dry-run" ]]; then
    device=cpu
    bin=${AWT_BIN:-target/release/awt}
    python=${PYTHON:-target/peers/torch/bin/python}
    peer_device=cpu
else
    device=cuda
    python=${PYTHON:-python3}
    peer_device=cuda
    bin=$work/awt
    if [[ -f target/cuda/awt.xz ]]; then
        "$python" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
            target/cuda/awt.xz "$bin"
    else
        cp target/cuda/awt "$bin"
    fi
    chmod +x "$bin"
    # The CUDA 13 libraries: from torch's nvidia-* wheels, else a system CUDA.
    libs=$("$python" - <<'EOF'
import glob, os, site, sys
want = ["libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10"]
roots = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
roots += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"]
dirs = []
for w in want:
    hits = [h for r in roots for h in glob.glob(os.path.join(r, "**", w), recursive=True)]
    if not hits:
        sys.exit(f"gpu-check: {w} not found under {roots}")
    d = os.path.dirname(sorted(hits)[0])
    if d not in dirs:
        dirs.append(d)
print(":".join(dirs))
EOF
)
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
fi
log "binary $bin, device $device"
(ldd "$bin" || true) > "$out/ldd.txt" 2>&1
if grep -q "not found" "$out/ldd.txt"; then
    log "missing libraries:"; grep "not found" "$out/ldd.txt" >&2; exit 1
fi
"$bin" --version > "$out/version.txt"

# 1. Agreement and timings on fresh nets (seed 0), then on adversarially trained ones (one PGD-10
#    epoch on the shipped Fashion-MNIST subset, trained on the device: training end to end there).
log "phase 1: check-device on fresh nets"
step 240 "check-device (fresh nets)" "$bin" check-device --device "$device" --data fashion-mnist-mini --n "$n" \
    --reps "$reps" --epoch-n "$epoch_n" --json "$out/check-fresh.json" > "$out/check-fresh.txt" 2>&1
for arch in lenet-300-100 lenet5-caffe; do
    log "training $arch for one epoch on $device"
    step 90 "training $arch" "$bin" train --device "$device" --arch "$arch" --data fashion-mnist-mini --adv pgd \
        --eps 0.1 --steps 10 --step-size 0.025 --epochs 1 --batch 128 --opt adam --lr 0.001 --eval-n 500 \
        --eval-steps 20 --seed 0 --train-limit "$train_n" --quiet --out "$work/$arch" > "$out/train-$arch.txt" 2>&1
    if [[ -f "$work/$arch/metrics.jsonl" ]]; then cp "$work/$arch/metrics.jsonl" "$out/train-$arch-metrics.jsonl"; fi
done
log "phase 1b: check-device on the trained nets (PGD-20 robust counts that are not zero)"
models=()
for arch in lenet-300-100 lenet5-caffe; do
    if [[ -f "$work/$arch/model.safetensors" ]]; then models+=(--model "$work/$arch/model.safetensors"); fi
done
if (( ${#models[@]} > 0 )); then
    step 120 "check-device (trained nets)" "$bin" check-device --device "$device" --data fashion-mnist-mini \
        --n "$n" --reps 0 "${models[@]}" --json "$out/check-trained.json" > "$out/check-trained.txt" 2>&1
fi

# 2. PyTorch on the same device, the same rows.
log "phase 2: PyTorch peers on $peer_device"
export AWT_PEER_DEVICE=$peer_device
{
    step 90 "torch_bench" "$python" benches/peers/torch_bench.py 2 20
    for net in lenet-300-100 lenet5-caffe; do
        step 60 "torch_awt_step $net" "$python" benches/peers/torch_awt_step.py 2 "$net"
        step 90 "torch_at_epoch $net" "$python" benches/peers/torch_at_epoch.py \
            crates/awt-data/embedded/fashion-mnist-mini 2 "$net"
    done
} > "$out/peers.jsonl" 2> "$out/peers.err"

# 3. The quick preset (GPU_CHECK_PRESET) end to end on the device, in the time left.
if [[ -x target/release/xtask ]] && (( $(left) > 60 )); then
    log "phase 3: the $preset preset with --device $device ($(left) s left)"
    set +e
    AWT_BIN="$bin" timeout "$(( $(left) - 20 ))" target/release/xtask reproduce --preset "$preset" --device "$device" \
        --out "$work/quick" > "$out/quick.txt" 2>&1
    echo "exit status $?" >> "$out/quick.txt"
    set -e
    mkdir -p "$out/quick"
    for r in "$work"/quick/*/; do
        if [[ -f "$r/manifest.json" ]]; then cp "$r/manifest.json" "$out/quick/$(basename "$r").json"; fi
    done
    if [[ -f "$work/quick/report.md" ]]; then cp "$work/quick/report.md" "$out/quick/report.md"; fi
else
    log "phase 3 skipped (no target/release/xtask, or under a minute left)"
fi
log "done"
