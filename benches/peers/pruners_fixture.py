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
  NTK-SAP  (YiteWang/NTK-SAP, `Pruners/pruners.py` class `NTKSAP`) |dJ/dm| * (m != 0) with
           J = sum over draws of sum_x ||f(x; w * m) - f(x; (w + eps delta) * m)||^2, the gradient
           summed over a round's draws before the absolute value; each draw a fresh net w, directions
           delta on the weights only (biases unperturbed) and noise inputs x; eps = 0.01; rounds on the
           exponential schedule like SynFlow's. Here the draws are formulas (below) instead of random.

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

NTK-SAP's draw t (t = 0, 1, ...; round r takes draws r * 2 and r * 2 + 1): the net's parameter j from
the weight formulas above at j + 20 (t + 1); the direction of weight l (0-based layer) the weight formula
at j = 200 + 10 t + l with fan_in 3 (amplitude 1); 16 inputs of the images' shape, the weight formula at
j = 500 + t with fan_in 3 over their flat index.

Stored per net: for SNIP and GraSP each layer's normalised score (sum, sum of squares, 64 entries at
indices (7919 s) mod size) and its global mask at density 0.05; for SynFlow the global masks at density
0.05 after 1 and after 100 rounds; for NTK-SAP the first round's scores (normalised by their sum) and
the global masks at density 0.05 after 1 round and the masks after 5 rounds (global on LeNet-300-100,
per layer on LeNet-5, where a global ranking empties the convolutions in the first round). A mask is stored as each layer's kept count and the sum and sum of
squares of its kept flat indices.

Usage: pruners_fixture.py OUT.json   (the PyTorch environment of `cargo xtask bench --peers`)
"""
import json, math, sys

import numpy as np
import formulas
import torch, torch.nn as nn, torch.nn.functional as F

torch.set_default_dtype(torch.float64)
N, DENSITY, TEMPERATURE, ROUNDS = 64, 0.05, 200.0, 100
SAP_EPS, SAP_DRAWS, SAP_ROUNDS, SAP_N = 0.01, 2, 5, 16


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


def layer_mask(scores, d):
    """Per layer, the highest round(d n) scores of the layer; no tie at a threshold (checked)."""
    return {name: global_mask({name: s}, d)[name] for name, s in scores.items()}


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


def sap_draw(make, t):
    """NTK-SAP's draw t: a fresh net, its weights' directions, the noise inputs (formulas, see above)."""
    net, names = make()
    layers = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
    deltas = {}
    with torch.no_grad():
        for l, (name, layer) in enumerate(zip(names, layers)):
            shape = tuple(layer.weight.shape)
            fan_in = int(np.prod(shape[1:]))
            layer.weight.copy_(torch.tensor(formulas.values(2 * l + 20 * (t + 1), shape, fan_in, False)))
            layer.bias.copy_(torch.tensor(formulas.values(2 * l + 1 + 20 * (t + 1), tuple(layer.bias.shape), fan_in, True)))
            deltas[name] = torch.tensor(formulas.values(200 + 10 * t + l, shape, 3, False))
    x = torch.tensor(formulas.values(500 + t, (SAP_N, 1, 28, 28), 3, False))
    return net, dict(zip(names, layers)), deltas, x


def masked_forward(net, weights, masks, x):
    """The net with each layer's weight replaced by weights[name] * masks[name]."""
    names = iter(masks)
    h = x
    for m in net:
        if isinstance(m, nn.Linear):
            n = next(names)
            h = F.linear(h, weights[n] * masks[n], m.bias)
        elif isinstance(m, nn.Conv2d):
            n = next(names)
            h = F.conv2d(h, weights[n] * masks[n], m.bias)
        else:
            h = m(h)
    return h


def ntk_sap(make, rounds, select=global_mask):
    """The first round's scores and the masks (`select`: global or per layer) after `rounds` rounds of
    SAP_DRAWS draws each."""
    _, names = make()
    masks, first = None, None
    for r in range(rounds):
        if masks is None:
            _, layers, _, _ = sap_draw(make, 0)
            masks = {n: torch.ones_like(l.weight) for n, l in layers.items()}
        m = {n: v.clone().requires_grad_(True) for n, v in masks.items()}
        total = {n: torch.zeros_like(v) for n, v in masks.items()}
        for t in range(r * SAP_DRAWS, (r + 1) * SAP_DRAWS):
            net, layers, deltas, x = sap_draw(make, t)
            w = {n: l.weight.detach() for n, l in layers.items()}
            moved = {n: w[n] + SAP_EPS * deltas[n] for n in w}
            j = (torch.norm(masked_forward(net, w, m, x) - masked_forward(net, moved, m, x), dim=-1) ** 2).sum()
            for n, g in zip(names, torch.autograd.grad(j, [m[n] for n in names])):
                total[n] += g
        scores = {n: total[n].abs() * (masks[n] != 0) for n in names}
        if first is None:
            first = scores
        masks = select(scores, DENSITY ** ((r + 1) / rounds))
    return first, masks


out = {"made_by": f"benches/peers/pruners_fixture.py, torch {torch.__version__}, float64", "n": N,
       "density": DENSITY, "temperature": TEMPERATURE, "rounds": ROUNDS,
       "ntk_sap": {"eps": SAP_EPS, "draws": SAP_DRAWS, "rounds": SAP_ROUNDS, "inputs": SAP_N}}
for key, make in [("lenet-300-100", lenet_300_100), ("lenet5-caffe", lenet5_caffe)]:
    x, y = batch(make)
    s, g = snip(make, x, y), grasp(make, x, y)
    out[key] = {
        "snip": {"scores": score_stats(s), "mask": mask_stats(global_mask(s, DENSITY))},
        "grasp": {"scores": score_stats(g), "mask": mask_stats(global_mask(g, DENSITY))},
        "synflow": {"1": mask_stats(synflow(make, 1)), str(ROUNDS): mask_stats(synflow(make, ROUNDS))},
    }
    sap_scores, sap_one = ntk_sap(make, 1)
    total = sum(float(v.sum()) for v in sap_scores.values())
    out[key]["ntk_sap"] = {"scores": score_stats({n: v / total for n, v in sap_scores.items()}),
                           "1": mask_stats(sap_one)}
    # Several rounds of a global ranking empty LeNet-5's convolutions at the first (these formula nets'
    # fc1 scores dwarf theirs), after which every score is 0: per layer there.
    scope, select = ("global", global_mask) if key == "lenet-300-100" else ("layer", layer_mask)
    out[key]["ntk_sap"][str(SAP_ROUNDS)] = {"scope": scope, "mask": mask_stats(ntk_sap(make, SAP_ROUNDS, select)[1])}
    print(key, {m: sum(v["kept"] for v in out[key][m]["mask"].values()) for m in ("snip", "grasp")})
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print(f"wrote {sys.argv[1]}")
