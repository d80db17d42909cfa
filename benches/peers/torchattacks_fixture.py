"""Peer fixture: torchattacks 3.5 (PyTorch, float64) on a LeNet-300-100 whose weights, inputs and labels
are formulas, written to crates/awt-attack/tests/data/torchattacks.json, which
`crates/awt-attack/tests/torchattacks.rs` compares awt's attacks against (docs/checks.md): the logits,
the cross-entropy input gradient, APGD's DLR loss and APGD-T's targeted DLR loss with their input
gradients, FGSM, and PGD without random start in ℓ∞ and ℓ2 (its last iterate, as torchattacks
returns it) — everything in the attacks that has no randomness.

The formulas (awt's and PyTorch's layout, the same here):

  weight j (parameter order, weight before bias), flat index k:  sqrt(3 / fan_in) * sin(1 + 0.37 k + 1.3 j)
  bias j, index k:                                              0.1 * sin(1 + 0.37 k + 1.3 j)
  example i, pixel e:                                           0.5 + 0.5 sin(0.11 e + 2.1 i + 0.7)
  labels: example 0's is its clean prediction (so that DLR's "true class on top" branch is taken),
  example 1's is (prediction + 5) mod 10 (a misclassified point); both are written to the fixture.
  The target class of APGD-T: (label + 1) mod 10.

Usage: torchattacks_fixture.py OUT.json   (the PyTorch environment of `cargo xtask bench --peers`)
"""
import json, math, sys

import numpy as np
import formulas
import torch, torch.nn as nn, torch.nn.functional as F
import torchattacks

torch.set_default_dtype(torch.float64)
fvalues = lambda *a: torch.tensor(formulas.values(*a))
fmask = lambda *a: torch.tensor(formulas.mask(*a))
N = 2
EPS, ALPHA, STEPS = 0.1, 0.025, 10
EPS2, ALPHA2 = 1.0, 0.25




net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
with torch.no_grad():
    for l, layer in enumerate([net[1], net[3], net[5]]):
        layer.weight.copy_(fvalues(2 * l, tuple(layer.weight.shape), layer.in_features, False))
        layer.bias.copy_(fvalues(2 * l + 1, tuple(layer.bias.shape), layer.in_features, True))
net.eval()

e = np.arange(784, dtype=np.float64)
x = torch.tensor(np.stack([0.5 + 0.5 * np.sin(0.11 * e + 2.1 * i + 0.7) for i in range(N)])).reshape(N, 1, 28, 28)
pred = net(x).argmax(1)
y = torch.stack([pred[0], (pred[1] + 5) % 10])
t = (y + 1) % 10

apgd = torchattacks.APGD(net, norm="Linf", eps=EPS, loss="dlr")
apgdt = torchattacks.APGDT(net, norm="Linf", eps=EPS)


def grad_of(loss_fn):
    xv = x.clone().requires_grad_(True)
    loss = loss_fn(net(xv))
    (g,) = torch.autograd.grad(loss.sum(), xv)
    return loss.detach(), g


flat = lambda a: a.detach().reshape(-1).tolist()
ce, ce_grad = grad_of(lambda z: F.cross_entropy(z, y, reduction="none"))
dlr, dlr_grad = grad_of(lambda z: apgd.dlr_loss(z, y))
dlrt, dlrt_grad = grad_of(lambda z: apgdt.dlr_loss_targeted(z, y, t))
fgsm = torchattacks.FGSM(net, eps=EPS)(x, y)
pgd = torchattacks.PGD(net, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)(x, y)
pgd2 = torchattacks.PGDL2(net, eps=EPS2, alpha=ALPHA2, steps=STEPS, random_start=False)(x, y)

fixture = {
    "made_by": f"benches/peers/torchattacks_fixture.py, torchattacks {torchattacks.__version__}, torch {torch.__version__}, float64",
    "n": N, "labels": y.tolist(), "eps": EPS, "alpha": ALPHA, "steps": STEPS, "eps_l2": EPS2, "alpha_l2": ALPHA2,
    "logits": flat(net(x)),
    "ce": flat(ce), "ce_grad": flat(ce_grad),
    "dlr": flat(dlr), "dlr_grad": flat(dlr_grad),
    "dlr_targeted": flat(dlrt), "dlr_targeted_grad": flat(dlrt_grad),
    "fgsm": flat(fgsm), "pgd_linf": flat(pgd), "pgd_l2": flat(pgd2),
}
# Every adversarial point moved, stayed in its ball and in the box: a fixture that tests something.
for name, adv, r, p in [("fgsm", fgsm, EPS, float("inf")), ("pgd_linf", pgd, EPS, float("inf")), ("pgd_l2", pgd2, EPS2, 2)]:
    d = (adv - x).reshape(N, -1)
    norms = d.norm(p=p, dim=1)
    assert bool((norms > 0).all()) and bool((norms <= r * (1 + 1e-9)).all()), (name, norms)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0, name
with open(sys.argv[1], "w") as fh:
    json.dump(fixture, fh)
    fh.write("\n")
print(f"wrote {sys.argv[1]}: logits {net(x).argmax(1).tolist()}, labels {y.tolist()}, "
      f"after PGD {net(pgd).argmax(1).tolist()}")
