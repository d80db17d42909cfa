"""Peer: torchattacks 3.5 (PyTorch) on an awt checkpoint, attack by attack, for the
cross-implementation table of docs/performance.md.

Loads an awt safetensors checkpoint into the equivalent PyTorch module (PyTorch parameter names;
`strict=True` for dense files, masks applied for sparse ones; the input standardisation recorded in
the metadata, if any, runs inside the module), the first N Fashion-MNIST test images from the IDX
files, and runs APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries, AutoAttack's
schedule) and the standard AutoAttack sequence, each on the clean-correct points, with AutoAttack's
standard settings (100 iterations, one restart). Prints one JSON line per attack: robust accuracy
and seconds per 1000 images.

Usage: torchattacks_compare.py CHECKPOINT [N] [EPS] [THREADS] [ATTACKS]
       (ATTACKS: comma-separated subset of apgd-ce,apgd-t,fab-t,square,autoattack)
"""
import gzip, json, os, struct, sys, time

import torch, torch.nn as nn, torch.nn.functional as F
import torchattacks
from safetensors import safe_open

ckpt = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
eps = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
which = sys.argv[5].split(",") if len(sys.argv) > 5 else ["apgd-ce", "apgd-t", "fab-t", "square", "autoattack"]


def zoo(arch):
    """The awt zoo's layer lists, PyTorch names (valid padding, 2x2 max-pooling)."""
    if arch == "lenet-300-100":
        return nn.ModuleDict(dict(fc1=nn.Linear(784, 300), fc2=nn.Linear(300, 100), fc3=nn.Linear(100, 10)))
    if arch == "lenet5-caffe":
        return nn.ModuleDict(dict(conv1=nn.Conv2d(1, 20, 5), conv2=nn.Conv2d(20, 50, 5),
                                  fc1=nn.Linear(800, 500), fc2=nn.Linear(500, 10)))
    raise SystemExit(f"unsupported architecture {arch}")


class Net(nn.Module):
    def __init__(self, arch, mean, std):
        super().__init__()
        self.arch, self.layers = arch, zoo(arch)
        self.mean, self.std = mean, std

    def forward(self, x):
        if self.mean is not None:
            x = (x - self.mean) / self.std
        L = self.layers
        if self.arch == "lenet-300-100":
            x = x.flatten(1)
            return L["fc3"](F.relu(L["fc2"](F.relu(L["fc1"](x)))))
        x = F.max_pool2d(F.relu(L["conv1"](x)), 2)
        x = F.max_pool2d(F.relu(L["conv2"](x)), 2)
        return L["fc2"](F.relu(L["fc1"](x.flatten(1))))


def load(path):
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    mean = float(meta["input_mean"]) if "input_mean" in meta else None
    std = float(meta["input_std"]) if "input_std" in meta else None
    net = Net(meta["arch"], mean, std)
    masks = {k[: -len("_mask")]: v for k, v in tensors.items() if k.endswith("_mask")}
    weights = {f"layers.{k}": v.float() for k, v in tensors.items() if not k.endswith("_mask")}
    net.load_state_dict(weights, strict=True)  # every parameter present, nothing extra
    with torch.no_grad():
        for k, m in masks.items():
            dict(net.named_parameters())[f"layers.{k}"].mul_(m.float())
    return net.eval()


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


root = os.environ.get("FMNIST", "/usr/share/datasets/fashion-mnist")
x = idx(f"{root}/t10k-images-idx3-ubyte.gz")[:n].float().div(255).unsqueeze(1)
y = idx(f"{root}/t10k-labels-idx1-ubyte.gz")[:n].long()
model = load(ckpt)
with torch.no_grad():
    correct = model(x).argmax(1) == y
xc, yc = x[correct], y[correct]
attacks = {
    "apgd-ce": lambda: torchattacks.APGD(model, eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
    "apgd-t": lambda: torchattacks.APGDT(model, eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0),
    "fab-t": lambda: torchattacks.FAB(model, eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10, seed=0),
    "square": lambda: torchattacks.Square(model, eps=eps, n_queries=5000, n_restarts=1, p_init=0.8, resc_schedule=False, seed=0),
    "autoattack": lambda: torchattacks.AutoAttack(model, eps=eps, version="standard", n_classes=10, seed=0),
}
print(json.dumps({"peer": f"torchattacks {torchattacks.__version__}, torch {torch.__version__}", "threads": torch.get_num_threads(),
                  "model": ckpt, "n": n, "eps": eps, "clean": correct.float().mean().item()}), flush=True)
for name in which:
    atk = attacks[name]()
    t = time.perf_counter()
    adv = torch.cat([atk(xc[i : i + 250], yc[i : i + 250]) for i in range(0, len(xc), 250)])
    secs = time.perf_counter() - t
    with torch.no_grad():
        robust = (model(adv).argmax(1) == yc).sum().item()
    linf = (adv - xc).abs().flatten(1).max(1).values.max().item()
    print(json.dumps({"attack": name, "robust_accuracy": robust / n, "seconds_per_1000": secs * 1000 / n,
                      "max_linf": linf}), flush=True)
