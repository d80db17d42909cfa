"""Peer fixture: the pruning scores at initialisation as Synaptic-Flow (ganguli-lab/Synaptic-Flow,
`Pruners/pruners.py` and `prune.py`) and GraSP's authors (alecwangcq/GraSP) compute them, in PyTorch
float64 on LeNet-300-100 and LeNet-5-Caffe, written to crates/awt-prune/tests/data/pruners.json, which
`crates/awt-prune/tests/pruners.rs` compares awt's scores and masks against (docs/checks.md).

Written from the papers' and those repositories' definitions, with PyTorch's autograd doing every
derivative (GraSP's Hessian-gradient product by double backward, where awt takes a central finite
difference of gradients):

  SNIP     |dL/dm| at m = 1 (= |w * dL/dw|), L the mean cross-entropy of the batch; normalised by its
           sum over every layer (Synaptic-Flow's `SNIP`).
  GraSP    (H g) * w with g = dL/dw and H the Hessian of L, L the cross-entropy of the logits divided by
           the temperature T = 200 (both repositories); normalised by |sum| + 1e-10. The highest are
           kept (Synaptic-Flow keeps the highest H g * w; GraSP's code removes the highest -w * H g).
  SynFlow  R = sum of the net's output on one all-ones input, every parameter (biases included) made
           absolute and the weights masked; score |w * dR/dw|; R rounds, the mask re-selected after
           round r at density d^(r/R) (`prune_loop`, exponential schedule).

Masks are global (one ranking over every weight, as the papers rank). The count kept is awt's,
round(d * n) (Synaptic-Flow prunes int((1 - d) n), which can keep one weight more), so that a differing
mask means differing scores, not a differing count rule. Ties would make the masks depend on how each
side breaks them; the script checks that no two scores tie at any selection threshold.

The weights and the batch are formulas the Rust test computes too (awt's layout is PyTorch's):

  weight j (parameter order, weight before bias), flat index k:  sqrt(3 / fan_in) * sin(1 + 0.37 k + 1.3 j)
  bias j, index k:                                              0.1 * sin(1 + 0.37 k + 1.3 j)
  image i, pixel e (a byte, read as byte / 255 in float32 as awt's data sets are, then float64):
                                                                (37 e + 101 i + 13) mod 256
  label of image i:                                             (3 + 7 i) mod 10

Stored per net: for SNIP and GraSP each layer's normalised score (sum, sum of squares, 64 entries at
indices (7919 s) mod size) and its global mask at density 0.05; for SynFlow the global masks at density
0.05 after 1 and after 100 rounds. A mask is stored as each layer's kept count and the sum and sum of
squares of its kept flat indices.

Usage: pruners_fixture.py OUT.json   (the PyTorch environment of `cargo xtask bench --peers`)
"""
import json, math, sys

import numpy as np
import formulas
import torch, torch.nn as nn, torch.nn.functional as F

torch.set_default_dtype(torch.float64)
N, DENSITY, TEMPERATURE, ROUNDS = 64, 0.05, 200.0, 100


def lenet_300_100():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10)), ["fc1", "fc2", "fc3"]


def lenet5_caffe():
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                         nn.Linear(500, 10)), ["conv1", "conv2", "fc1", "fc2"]


def formula_net(make):
    net, names = make()
    layers = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for l, layer in enumerate(layers):
            fan_in = int(np.prod(layer.weight.shape[1:]))
            layer.weight.copy_(torch.tensor(formulas.values(2 * l, tuple(layer.weight.shape), fan_in, False)))
            layer.bias.copy_(torch.tensor(formulas.values(2 * l + 1, tuple(layer.bias.shape), fan_in, True)))
    net.eval()
    return net, dict(zip(names, layers))


def keep_count(d, n):
    return int(math.floor(d * n + 0.5))


def global_mask(scores, d):
    """The highest round(d n) scores over every layer; no tie at the threshold (checked)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = keep_count(d, flat.numel())
    top = torch.sort(flat, descending=True).values
    assert top[k - 1] > top[k], f"a tie at the selection threshold ({float(top[k - 1])})"
    threshold = top[k - 1]
    return {name: (s >= threshold).to(torch.float64) for name, s in scores.items()}


def mask_stats(masks):
    out = {}
    for name, m in masks.items():
        kept = torch.nonzero(m.reshape(-1)).reshape(-1).to(torch.float64)
        out[name] = {"kept": int(kept.numel()), "index_sum": float(kept.sum()), "index_sumsq": float((kept * kept).sum())}
    return out


def score_stats(scores):
    out = {}
    for name, s in scores.items():
        flat = s.detach().reshape(-1)
        idx = [(7919 * j) % flat.numel() for j in range(64)]
        out[name] = {"sum": float(flat.sum()), "sumsq": float((flat * flat).sum()),
                     "entries": [[k, float(flat[k])] for k in idx]}
    return out


def batch(make):
    e, i = np.arange(784), np.arange(N)[:, None]
    bytes_ = torch.tensor((37 * e + 101 * i + 13) % 256, dtype=torch.float32)
    x = (bytes_ / 255.0).to(torch.float64).reshape(N, 1, 28, 28)
    y = torch.tensor([(3 + 7 * n) % 10 for n in range(N)])
    return x, y


def snip(make, x, y):
    net, layers = formula_net(make)
    weights = [l.weight for l in layers.values()]
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights)
    raw = {name: (g * w).abs().detach() for name, g, w in zip(layers, grads, weights)}
    total = sum(float(s.sum()) for s in raw.values())
    return {name: s / total for name, s in raw.items()}


def grasp(make, x, y):
    net, layers = formula_net(make)
    weights = [l.weight for l in layers.values()]
    loss = lambda: F.cross_entropy(net(x) / TEMPERATURE, y)
    stopped = [g.detach() for g in torch.autograd.grad(loss(), weights)]
    grads = torch.autograd.grad(loss(), weights, create_graph=True)
    hg = torch.autograd.grad(sum((s * g).sum() for s, g in zip(stopped, grads)), weights)
    raw = {name: (h * w).detach() for name, h, w in zip(layers, hg, weights)}
    norm = abs(sum(float(s.sum()) for s in raw.values())) + 1e-10
    return {name: s / norm for name, s in raw.items()}


def synflow(make, rounds):
    net, layers = formula_net(make)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    originals = {name: l.weight.detach().clone() for name, l in layers.items()}
    masks = {name: torch.ones_like(w) for name, w in originals.items()}
    for r in range(1, rounds + 1):
        with torch.no_grad():
            for name, l in layers.items():
                l.weight.copy_(originals[name] * masks[name])
        net.zero_grad()
        net(torch.ones(1, 1, 28, 28)).sum().backward()
        scores = {name: (l.weight.grad * l.weight).detach().abs() for name, l in layers.items()}
        masks = global_mask(scores, DENSITY ** (r / rounds))
    return masks


out = {"made_by": f"benches/peers/pruners_fixture.py, torch {torch.__version__}, float64", "n": N,
       "density": DENSITY, "temperature": TEMPERATURE, "rounds": ROUNDS}
for key, make in [("lenet-300-100", lenet_300_100), ("lenet5-caffe", lenet5_caffe)]:
    x, y = batch(make)
    s, g = snip(make, x, y), grasp(make, x, y)
    out[key] = {
        "snip": {"scores": score_stats(s), "mask": mask_stats(global_mask(s, DENSITY))},
        "grasp": {"scores": score_stats(g), "mask": mask_stats(global_mask(g, DENSITY))},
        "synflow": {"1": mask_stats(synflow(make, 1)), str(ROUNDS): mask_stats(synflow(make, ROUNDS))},
    }
    print(key, {m: sum(v["kept"] for v in out[key][m]["mask"].values()) for m in ("snip", "grasp")})
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print(f"wrote {sys.argv[1]}")
