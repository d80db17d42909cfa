"""Peer: PyTorch (CPU) on the hot paths that benches/bench_main.rs measures for awt, same shapes.

At batch 128 on 28x28x1 inputs, for LeNet-300-100 and LeNet-5-Caffe (valid padding, 2x2 max-pool):
  fwd_bwd  - forward, mean cross-entropy, backward to every weight (one training step without its
             optimiser update)
  pgd_step - one PGD step: forward, the input gradient of the cross-entropy, signed step, projection
             onto the eps-ball and the box (what every step of PGD / APGD and of PGD training costs)
  apgd_ce100 - torchattacks' APGD-CE as AutoAttack runs it (eps 0.1, 100 iterations, one restart),
             `attack_single_run` on every point of the batch (its `forward` would attack only the
             points the net classifies correctly); left out where torchattacks is not installed
Prints one JSON line per (net, measure): the median of several timed repetitions, in ms.

Usage: torch_bench.py [THREADS] [REPS]
"""
import json, os, statistics, sys, time

import torch, torch.nn as nn, torch.nn.functional as F

try:
    import torchattacks
except ImportError:
    torchattacks = None

# AWT_PEER_DEVICE=cuda runs the same on the GPU (the device check, scripts/gpu-check.sh); the clock
# is read after torch.cuda.synchronize().
DEV = torch.device(os.environ.get("AWT_PEER_DEVICE", "cpu"))
torch.set_default_device(DEV)


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 50
torch.set_num_threads(threads)
torch.manual_seed(0)


def lenet_300_100():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def lenet5_caffe():
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))


def median_ms(fn, reps, warm=5):
    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


x = torch.rand(128, 1, 28, 28)
y = torch.arange(128) % 10
for name, build, r in [("lenet-300-100", lenet_300_100, reps), ("lenet5-caffe", lenet5_caffe, max(5, reps // 5))]:
    model = build()

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def pgd_step(eps=0.1, alpha=0.025):
        xa = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)
        return torch.min(torch.max(xa.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)

    for measure, fn in [("fwd_bwd", fwd_bwd), ("pgd_step", pgd_step)]:
        print(json.dumps({"peer": f"torch {torch.__version__}", "threads": threads, "net": name, "measure": measure,
                          "ms": median_ms(fn, r), "device": str(DEV)}), flush=True)
    if torchattacks is not None:
        atk = torchattacks.APGD(model, norm="Linf", eps=0.1, steps=100, n_restarts=1, loss="ce", seed=0)
        ms = median_ms(lambda: atk.attack_single_run(x, y), max(3, r // 10), warm=1)
        print(json.dumps({"peer": f"torchattacks {torchattacks.__version__} (torch {torch.__version__})",
                          "threads": threads, "net": name, "measure": "apgd_ce100", "ms": ms, "device": str(DEV)}),
              flush=True)
