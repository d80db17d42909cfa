"""Peer: one AWT search step in PyTorch (CPU), LeNet-300-100 or LeNet-5 (Caffe variant), batch 64 (two
halves of 32), density 0.05 in every layer.

The step `awt_search/<net>/b64` of benches/bench_main.rs does: PGD-10 against the dense
teacher (eps 0.1, step 0.025, random start), teacher and student kernels on the two halves (full
k x k blocks, the student's over its unmasked weights), outputs, the NTT/AWT loss (lambda_ker 1,
lambda_l2 1e-4 / density), one backward, one Adam step. Here the same, written as a PyTorch user
would: the kernel by the structured (per-layer) formula, which autograd differentiates twice where
needed (a Jacobian-based kernel via torch.func costs ~100 GFLOP per step for the MLP). For LeNet-5 the
backward signals of each class come from autograd (one backward per class, kept in the graph for the
student), the convolutions' per-example weight gradients from the unfolded patches (einsum), the
linear layers' terms as for the MLP.

Usage: torch_awt_step.py [THREADS] [NET]   (NET: lenet-300-100, the default, or lenet5-caffe)
       -> one JSON line: median ms per step
"""
import json, os, sys, time, statistics
import torch, torch.nn.functional as F

# AWT_PEER_DEVICE=cuda runs the same on the GPU (the device check, scripts/gpu-check.sh); the clock
# is read after torch.cuda.synchronize().
DEV = torch.device(os.environ.get("AWT_PEER_DEVICE", "cpu"))
torch.set_default_device(DEV)


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
NET = sys.argv[2] if len(sys.argv) > 2 else "lenet-300-100"
if NET not in ("lenet-300-100", "lenet5-caffe"):
    sys.exit(f"torch_awt_step: unknown net {NET!r}")
DENS, K, EPS, ALPHA = 0.05, 10, 0.1, 0.025
sizes = [(784, 300), (300, 100), (100, 10)]
# LeNet-5 (Caffe): conv 1->20 5x5, ReLU, max-pool 2; conv 20->50 5x5, ReLU, max-pool 2; 800->500, ReLU, 500->10
shapes5 = [(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]

def init():
    ps = []
    for shape in (shapes5 if NET == "lenet5-caffe" else [(o, i) for i, o in sizes]):
        b = 1 / torch.Size(shape[1:]).numel() ** 0.5
        ps += [torch.empty(shape).uniform_(-b, b), torch.empty(shape[0]).uniform_(-b, b)]
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

def linear_term(a1, a2, d1, d2, m):
    """A linear layer's kernel term (n1, k, n2, k) from its inputs a (n, in) and signals d (n, k, out)."""
    if m is None:
        g = a1 @ a2.T + 1
        return torch.einsum('icp,jdp->icjd', d1, d2) * g[:, None, :, None]
    n1, n2, p = a1.shape[0], a2.shape[0], m.shape[0]
    g = ((a1[:, None, :] * a2[None, :, :]).reshape(n1 * n2, -1) @ m.T + 1).reshape(n1, n2, 1, p)
    # R[i, (j, c'), p] = G[i, j, p] D2[j, c', p]; one (n2 k x p)(p x k) product per i (a plain
    # three-operand einsum builds an (n1, k, n2, k, p) temporary and is ~10x slower)
    r = (d2[None] * g).reshape(n1, n2 * K, p)
    return (r @ d1.transpose(1, 2)).reshape(n1, n2, K, K).permute(0, 3, 1, 2)

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
        th = th + linear_term(a1[l], a2[l], d1[l], d2[l], None if ms is None else ms[l])
    return th.reshape(x1.shape[0] * K, x2.shape[0] * K)

def forward5(ps, x, ms=None):
    """LeNet-5's outputs, the inputs of its four weighted layers and their outputs (pre-activations)."""
    w = [ps[2 * l] if ms is None else ps[2 * l] * ms[l] for l in range(4)]
    z1 = F.conv2d(x, w[0], ps[1])
    a1 = F.max_pool2d(z1.relu(), 2)
    z2 = F.conv2d(a1, w[1], ps[3])
    h = F.max_pool2d(z2.relu(), 2).flatten(1)
    z3 = h @ w[2].T + ps[5]
    a3 = z3.relu()
    z4 = a3 @ w[3].T + ps[7]
    return z4, [x, a1, h, a3], [z1, z2, z3, z4]

def kernel5(ps, x1, x2, ms=None):
    """LeNet-5's full NTK (n1 k, n2 k) over the unmasked weights, per layer."""
    student = ms is not None  # its kernel is differentiated: keep the signals in the graph
    sides = []
    for x in (x1, x2):
        out, ins, zs = forward5(ps, x.detach().requires_grad_(True), ms)
        # D_l[:, c] = d f_c / d z_l for every example at once (examples are independent)
        per_class = [torch.autograd.grad(out[:, c].sum(), zs, retain_graph=True, create_graph=student)
                     for c in range(K)]
        ds = [torch.stack([g[l] for g in per_class], 1) for l in range(4)]  # (n, k, *z_l.shape[1:])
        sides.append((ins, ds))
    (i1, d1), (i2, d2) = sides
    n1, n2 = x1.shape[0], x2.shape[0]
    th = 0
    for l in range(2):  # convolutions: per-example weight gradients, contracted pairwise
        g = []
        for a, d, n in ((i1[l], d1[l], n1), (i2[l], d2[l], n2)):
            patches = F.unfold(a, 5)  # (n, c*5*5, L)
            g.append((torch.einsum('ncol,nql->ncoq', d.flatten(3), patches).reshape(n * K, -1),
                      d.flatten(3).sum(3).reshape(n * K, -1)))
        (g1, b1), (g2, b2) = g
        if student:
            g1 = g1 * ms[l].reshape(1, -1)
        th = th + (g1 @ g2.T + b1 @ b2.T).reshape(n1, K, n2, K)
    for l in (2, 3):
        th = th + linear_term(i1[l], i2[l], d1[l], d2[l], ms[l] if student else None)
    return th.reshape(n1 * K, n2 * K)

fwd, ker = (forward5, kernel5) if NET == "lenet5-caffe" else (forward, kernel)

def pgd(x, y):
    xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(10):
        xa.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(fwd(teacher, xa)[0], y), xa)
        xa = torch.min(torch.max(xa.detach() + ALPHA * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    return xa.detach()

x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))

def step():
    xa = pgd(x, y)
    x1, x2 = xa[:32], xa[32:]
    kt = ker(teacher, x1, x2).detach()  # LeNet-5's signals come from autograd: not under no_grad
    with torch.no_grad():
        ft = fwd(teacher, xa)[0]
    ks, fs = ker(student, x1, x2, masks), fwd(student, xa, masks)[0]
    l2 = sum(((w * m) ** 2).sum() for w, m in zip(student[0::2], masks))
    loss = ((ks - kt) ** 2).mean() + ((fs - ft) ** 2).mean() + 1e-4 / DENS * l2
    opt.zero_grad(); loss.backward(); opt.step()

mlp = NET == "lenet-300-100"
for _ in range(3 if mlp else 2): step()
sync()
ts = []
for _ in range(20 if mlp else 5):
    t = time.perf_counter(); step(); sync(); ts.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"peer": f"torch {torch.__version__}", "threads": torch.get_num_threads(), "net": NET,
                  "measure": "awt_step", "ms": statistics.median(ts), "min_ms": min(ts),
                  "device": str(DEV)}), flush=True)
