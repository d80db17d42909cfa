"""Peer fixture: PyTorch training a masked MLP (784-32-10) in float64 for a few full-batch steps, with
Adam (L2 weight decay) and with SGD (Nesterov momentum, weight decay), written to
crates/awt-train/tests/data/pytorch-training.json, which `crates/awt-train/tests/pytorch.rs` compares
`awt_train::train` against (docs/checks.md): the trained weights and the trained net's logits.

The net, the data and the mask are formulas both sides compute (awt's layout is PyTorch's):

  weight j (parameter order, weight before bias), flat index k:  sqrt(3 / fan_in) * sin(1 + 0.37 k + 1.3 j)
  bias j, index k:                                              0.1 * sin(1 + 0.37 k + 1.3 j)
  mask of weight j, index k (kept):  (2654435761 k + 40503 j + 12345) mod 2^32 < 1288490188 (about 30 %)
  image i, pixel e (a byte, read as byte / 255 in float32 as awt's data sets are, then float64):
                                     (37 e + 101 i + 13) mod 256
  label of image i:                  (3 + 7 i) mod 10

The mask is applied as pruning is in awt: pruned weights are zero from the start and receive no
gradient, so with these optimisers they stay zero. One batch holds every image, so the data order
(awt's own seeded shuffle) does not matter. Stored: the final weights' sum and sum of squares per
tensor, 64 entries per tensor at indices (7919 s) mod size, and the trained net's logits on the images.

Usage: torch_train_fixture.py OUT.json   (the PyTorch environment of `cargo xtask bench --peers`)
"""
import json, math, sys

import numpy as np
import formulas
import torch, torch.nn as nn, torch.nn.functional as F

torch.set_default_dtype(torch.float64)
fvalues = lambda *a: torch.tensor(formulas.values(*a))
fmask = lambda *a: torch.tensor(formulas.mask(*a))
N, STEPS = 16, 5
CONFIGS = {
    "adam": dict(lr=1e-3, make=lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)),
    "sgd-nesterov": dict(lr=0.05, make=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)),
}






e, i = np.arange(784), np.arange(N)[:, None]
bytes_ = torch.tensor((37 * e + 101 * i + 13) % 256, dtype=torch.float32)
x = (bytes_ / 255.0).to(torch.float64).reshape(N, 1, 28, 28)
y = torch.tensor([(3 + 7 * n) % 10 for n in range(N)])

out = {"made_by": f"benches/peers/torch_train_fixture.py, torch {torch.__version__}, float64", "n": N, "steps": STEPS}
for name, c in CONFIGS.items():
    layers = [nn.Linear(784, 32), nn.Linear(32, 10)]
    masks = []
    with torch.no_grad():
        for l, layer in enumerate(layers):
            m = fmask(2 * l, tuple(layer.weight.shape))
            layer.weight.copy_(fvalues(2 * l, tuple(layer.weight.shape), layer.in_features, False) * m)
            layer.bias.copy_(fvalues(2 * l + 1, tuple(layer.bias.shape), layer.in_features, True))
            masks.append(m)
    params = [p for layer in layers for p in (layer.weight, layer.bias)]
    opt = c["make"](params, c["lr"])
    forward = lambda x: layers[1](F.relu(layers[0](x.reshape(x.shape[0], -1))))
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        for layer, m in zip(layers, masks):
            layer.weight.grad.mul_(m)
        opt.step()
    tensors = {}
    for l, layer in enumerate(layers):
        for kind, t in [("weight", layer.weight), ("bias", layer.bias)]:
            flat = t.detach().reshape(-1)
            idx = [(7919 * s) % flat.numel() for s in range(64)]
            tensors[f"fc{l + 1}.{kind}"] = {"sum": float(flat.sum()), "sumsq": float((flat * flat).sum()),
                                            "entries": [[k, float(flat[k])] for k in idx]}
        assert bool((layer.weight.detach()[masks[l] == 0] == 0).all()), "a pruned weight moved"
    out[name] = {"lr": c["lr"], "tensors": tensors, "logits": forward(x).detach().reshape(-1).tolist()}
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print(f"wrote {sys.argv[1]}")
