"""Peer: one AWT search step in PyTorch (CPU), LeNet-300-100, batch 64 (two halves of 32), density 0.05.

The step `awt_search/lenet-300-100/b64` of benches/bench_main.rs does: PGD-10 against the dense
teacher (eps 0.1, step 0.025, random start), teacher and student kernels on the two halves (full
k x k blocks, the student's over its unmasked weights), outputs, the NTT/AWT loss (lambda_ker 1,
lambda_l2 1e-4 / density), one backward, one Adam step. Here the same, written as a PyTorch user
would: the kernel by the structured (per-layer) formula, which autograd differentiates twice where
needed (a Jacobian-based kernel via torch.func costs ~100 GFLOP per step for this net).

Usage: torch_awt_step.py [THREADS]   -> one JSON line: median ms per step
"""
import json, sys, time, statistics
import torch, torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
DENS, K, EPS, ALPHA = 0.05, 10, 0.1, 0.025
sizes = [(784, 300), (300, 100), (100, 10)]

def init():
    ps = []
    for i, o in sizes:
        b = 1 / i ** 0.5
        ps += [torch.empty(o, i).uniform_(-b, b), torch.empty(o).uniform_(-b, b)]
    return ps

def topk(w):
    k = max(1, round(DENS * w.numel()))
    thr = w.abs().flatten().kthvalue(w.numel() - k + 1).values
    return (w.abs() >= thr).float()

teacher = init()
masks = [topk(w) for w in teacher[0::2]]
student = [p.clone().requires_grad_(True) for p in teacher]
opt = torch.optim.Adam(student, lr=5e-4)

def forward(ps, x, ms=None):
    """Outputs, stage inputs a_l and ReLU derivatives."""
    a, acts, ders = x.flatten(1), [], []
    for l in range(3):
        w = ps[2 * l] if ms is None else ps[2 * l] * ms[l]
        acts.append(a)
        z = a @ w.T + ps[2 * l + 1]
        if l < 2:
            ders.append((z > 0).float())
            a = z.relu()
        else:
            a = z
    return a, acts, ders

def kernel(ps, x1, x2, ms=None):
    """Full NTK (n1 k, n2 k) over the unmasked weights, by the per-layer formula."""
    sides = []
    for x in (x1, x2):
        _, acts, ders = forward(ps, x, ms)
        n = x.shape[0]
        d = torch.eye(K).expand(n, K, K)  # D[i, c, p] = d f_c / d z_p at the output
        ds = [None, None, d]
        for l in (1, 0):
            w = ps[2 * l + 2] if ms is None else ps[2 * l + 2] * ms[l + 1]
            d = (d @ w) * ders[l][:, None, :]
            ds[l] = d
        sides.append((acts, ds))
    (a1, d1), (a2, d2) = sides
    th = 0
    for l in range(3):
        if ms is None:
            g = a1[l] @ a2[l].T + 1
            th = th + torch.einsum('icp,jdp->icjd', d1[l], d2[l]) * g[:, None, :, None]
        else:
            n1, n2, p = a1[l].shape[0], a2[l].shape[0], ms[l].shape[0]
            g = ((a1[l][:, None, :] * a2[l][None, :, :]).reshape(n1 * n2, -1) @ ms[l].T + 1).reshape(n1, n2, 1, p)
            # R[i, (j, c'), p] = G[i, j, p] D2[j, c', p]; one (n2 k x p)(p x k) product per i (a plain
            # three-operand einsum builds an (n1, k, n2, k, p) temporary and is ~10x slower)
            r = (d2[l][None] * g).reshape(n1, n2 * K, p)
            th = th + (r @ d1[l].transpose(1, 2)).reshape(n1, n2, K, K).permute(0, 3, 1, 2)
    return th.reshape(x1.shape[0] * K, x2.shape[0] * K)

def pgd(x, y):
    xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(10):
        xa.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(forward(teacher, xa)[0], y), xa)
        xa = torch.min(torch.max(xa.detach() + ALPHA * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    return xa.detach()

x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))

def step():
    xa = pgd(x, y)
    x1, x2 = xa[:32], xa[32:]
    with torch.no_grad():
        kt, ft = kernel(teacher, x1, x2), forward(teacher, xa)[0]
    ks, fs = kernel(student, x1, x2, masks), forward(student, xa, masks)[0]
    l2 = sum(((w * m) ** 2).sum() for w, m in zip(student[0::2], masks))
    loss = ((ks - kt) ** 2).mean() + ((fs - ft) ** 2).mean() + 1e-4 / DENS * l2
    opt.zero_grad(); loss.backward(); opt.step()

for _ in range(3): step()
ts = []
for _ in range(20):
    t = time.perf_counter(); step(); ts.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"peer": f"torch {torch.__version__}", "threads": torch.get_num_threads(), "net": "lenet-300-100",
                  "measure": "awt_step", "ms": statistics.median(ts), "min_ms": min(ts)}), flush=True)
