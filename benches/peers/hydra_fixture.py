"""Peer fixture: HYDRA's score optimisation as its code defines it (inspire-group/hydra:
`models/layers.py` `GetSubnet` and `SubnetLinear`/`SubnetConv`, `utils/model.py`
`initialize_scaled_score`, `utils/schedules.py` `get_optimizer` and `cosine_schedule`, called per
epoch as its `train.py` does), in PyTorch float64 on LeNet-300-100
and LeNet-5-Caffe, written to crates/awt-ticket/tests/data/hydra.json, which
`crates/awt-ticket/tests/hydra.rs` compares `awt_ticket::optimise_scores` against (docs/checks.md).

Written from those definitions, with PyTorch's autograd doing the derivatives:

  scores    start at sqrt(6 / fan_in) * w / max|w| per layer (`initialize_scaled_score`);
  mask      per layer, the top k of |scores|: GetSubnet sorts |s| and zeroes the lowest
            int((1 - k) n) (k = 0.25 here, where that count and awt's round(k n) agree);
  gradient  straight through GetSubnet to |s|, then through the absolute value to s;
  optimiser SGD, momentum 0.9, weight decay 1e-4 on the scores (the weights and biases frozen);
  schedule  HYDRA's cosine_schedule (no warm-up, its default): before epoch e of E, the rate is set to
            LR * 0.5 * (1 + cos((e - 1) / E * pi)), e counted from 0 as train.py's loop does.

The loss is the mean cross-entropy of one full batch (the natural loss: HYDRA's is PGD-AT, whose
random start neither side could reproduce in the other's generator; the objective is awt-train's,
tested on its own). STEPS epochs of one full-batch step each at base rate LR, above HYDRA's 0.1 so that 20 steps move the masks far and
some scores cross zero, where ranking |s| (HYDRA) and ranking s differ; the count of scores whose sign
changed is stored to show it.

The pretrained weights and the batch are formulas the Rust test computes too (awt's layout is
PyTorch's):

  weight j (parameter order, weight before bias), flat index k:  sqrt(3 / fan_in) * sin(1 + 0.37 k + 1.3 j)
  bias j, index k:                                              0.1 * sin(1 + 0.37 k + 1.3 j)
  image i, pixel e (a byte, read as byte / 255 in float32 as awt's data sets are, then float64):
                                                                (37 e + 101 i + 13) mod 256
  label of image i:                                             (3 + 7 i) mod 10

Stored per net and layer: the final scores (sum, sum of squares, 64 entries at indices (7919 s) mod
size) and the final mask (kept count, sum and sum of squares of the kept
flat indices) with the count of entries that changed from the initial mask, and the count of scores
whose sign changed.

Usage: hydra_fixture.py OUT.json   (the PyTorch environment of `cargo xtask bench --peers`)
"""
import json, math, sys

import numpy as np
import formulas
import torch, torch.nn as nn, torch.nn.functional as F

torch.set_default_dtype(torch.float64)
N, K, LR, STEPS, WD = 64, 0.25, 3.0, 20, 1e-4


class GetSubnet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, k):
        out = scores.clone()
        _, idx = scores.flatten().sort()
        j = int((1 - k) * scores.numel())
        flat = out.flatten()
        flat[idx[:j]] = 0
        flat[idx[j:]] = 1
        return out

    @staticmethod
    def backward(ctx, g):
        return g, None


def layers_of(key):
    if key == "lenet-300-100":
        return [("fc1", "linear", (300, 784)), ("fc2", "linear", (100, 300)), ("fc3", "linear", (10, 100))]
    return [("conv1", "conv", (20, 1, 5, 5)), ("conv2", "conv", (50, 20, 5, 5)), ("fc1", "linear", (500, 800)),
            ("fc2", "linear", (10, 500))]


def forward(key, params, masks, x):
    h = x
    layers = layers_of(key)
    for l, (name, kind, _) in enumerate(layers):
        w, b = params[name]
        w = w * masks[name]
        if kind == "conv":
            h = F.max_pool2d(F.relu(F.conv2d(h, w, b)), 2)
        else:
            h = F.linear(h.reshape(h.shape[0], -1), w, b)
            if l + 1 < len(layers):
                h = F.relu(h)
    return h


def stats(t):
    flat = t.detach().reshape(-1)
    idx = [(7919 * s) % flat.numel() for s in range(64)]
    return {"sum": float(flat.sum()), "sumsq": float((flat * flat).sum()), "entries": [[k, float(flat[k])] for k in idx]}


def mask_stats(m):
    kept = torch.nonzero(m.reshape(-1)).reshape(-1).to(torch.float64)
    return {"kept": int(kept.numel()), "index_sum": float(kept.sum()), "index_sumsq": float((kept * kept).sum())}


e, i = np.arange(784), np.arange(N)[:, None]
x = (torch.tensor((37 * e + 101 * i + 13) % 256, dtype=torch.float32) / 255.0).to(torch.float64).reshape(N, 1, 28, 28)
y = torch.tensor([(3 + 7 * n) % 10 for n in range(N)])

out = {"made_by": f"benches/peers/hydra_fixture.py, torch {torch.__version__}, float64", "n": N, "k": K, "lr": LR,
       "steps": STEPS, "weight_decay": WD, "schedule": "hydra-cosine, one step per epoch"}
for key in ["lenet-300-100", "lenet5-caffe"]:
    params, scores = {}, {}
    for l, (name, kind, shape) in enumerate(layers_of(key)):
        fan_in = int(np.prod(shape[1:]))
        w = torch.tensor(formulas.values(2 * l, shape, fan_in, False))
        b = torch.tensor(formulas.values(2 * l + 1, (shape[0],), fan_in, True))
        params[name] = (w, b)
        scores[name] = (math.sqrt(6 / fan_in) * w / w.abs().max()).clone().requires_grad_(True)
    initial = {name: GetSubnet.apply(s.detach().abs(), K) for name, s in scores.items()}
    signs = {name: torch.sign(s.detach()) for name, s in scores.items()}
    opt = torch.optim.SGD(list(scores.values()), lr=LR, momentum=0.9, weight_decay=WD)
    for epoch in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = LR * 0.5 * (1 + np.cos((epoch - 1) / STEPS * np.pi))
        opt.zero_grad()
        masks = {name: GetSubnet.apply(s.abs(), K) for name, s in scores.items()}
        F.cross_entropy(forward(key, params, masks, x), y).backward()
        opt.step()
    final = {name: GetSubnet.apply(s.detach().abs(), K) for name, s in scores.items()}
    out[key] = {name: {"scores": stats(s), "crossed": int((torch.sign(s.detach()) != signs[name]).sum()), "mask": mask_stats(final[name]),
                       "changed": int((final[name] != initial[name]).sum())} for name, s in scores.items()}
    print(key, {n: (v["crossed"], v["changed"]) for n, v in out[key].items()})
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print(f"wrote {sys.argv[1]}")
