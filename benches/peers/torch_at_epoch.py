"""Peer: one epoch of PGD-10 adversarial training of LeNet-300-100 or LeNet-5 (Caffe) in PyTorch (CPU) on the full
Fashion-MNIST training set, the recipe `cargo xtask bench --peers` times awt on:

  eps 0.1, step 0.025, 10 steps, random start, projection onto the eps-ball and [0, 1];
  Adam, lr 1e-3, batch 128, examples shuffled once; pixels scaled to [0, 1].

Reads the four IDX files (gzipped or not) from DATA_DIR (train-images-idx3-ubyte[.gz], ...).
Prints one JSON line: seconds for the epoch (data already in memory), images per second and the
final training loss (a sanity check that it trained).

Usage: torch_at_epoch.py DATA_DIR [THREADS] [NET]   (NET: lenet-300-100, the default, or lenet5-caffe)
"""
import gzip, json, os, struct, sys, time

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F


def idx(path):
    for p in (path + ".gz", path):
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            ndim = raw[3]
            dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    sys.exit(f"torch_at_epoch: no {path}[.gz]")


# AWT_PEER_DEVICE=cuda runs the same on the GPU (the device check, scripts/gpu-check.sh); the clock
# is read after torch.cuda.synchronize().
DEV = torch.device(os.environ.get("AWT_PEER_DEVICE", "cpu"))
torch.set_default_device(DEV)


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()

data = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.from_numpy(idx(os.path.join(data, "train-images-idx3-ubyte")).astype(np.float32) / 255.0).reshape(-1, 1, 28, 28).to(DEV)
y = torch.from_numpy(idx(os.path.join(data, "train-labels-idx1-ubyte")).astype(np.int64)).to(DEV)
net = sys.argv[3] if len(sys.argv) > 3 else "lenet-300-100"
if net == "lenet-300-100":
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
elif net == "lenet5-caffe":
    model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
else:
    sys.exit(f"torch_at_epoch: unknown net {net!r}")
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
EPS, ALPHA, STEPS, BATCH = 0.1, 0.025, 10, 128


def pgd(xb, yb):
    xa = (xb + torch.empty_like(xb).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), yb), xa)
        xa = torch.min(torch.max(xa.detach() + ALPHA * g.sign(), xb - EPS), xb + EPS).clamp(0, 1)
    return xa.detach()


order = torch.randperm(len(x))
start = time.perf_counter()
loss_sum, seen = 0.0, 0
for i in range(0, len(x), BATCH):
    idxs = order[i:i + BATCH]
    xb, yb = x[idxs], y[idxs]
    xa = pgd(xb, yb)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(xa), yb)
    loss.backward()
    opt.step()
    loss_sum += loss.item() * len(idxs)
    seen += len(idxs)
sync()
secs = time.perf_counter() - start
print(json.dumps({"peer": f"torch {torch.__version__}", "threads": threads, "net": net, "measure": "at_epoch",
                  "device": str(DEV), "images": seen, "s": secs, "images_per_sec": seen / secs, "train_loss": loss_sum / seen}), flush=True)
