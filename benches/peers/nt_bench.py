"""Peer: neural-tangents' empirical NTK of LeNet-300-100 or LeNet-5 (CPU), two batches of 64, as
`ntk/<net>/n64x64/{full,traced}` of benches/bench_main.rs computes it:

  full   - the (64*10) x (64*10) kernel, trace_axes=()
  traced - the 64 x 64 kernel traced over the logits, trace_axes=(-1,)
  gram   - the full kernel of the first batch with itself (x2=None), as `gram` is
  diag   - each of 256 examples' traced kernel with itself (diagonal_axes=(0,), trace_axes=(-1,)),
           as `ntk/<net>/diag256/traced` (awt's `structured_diagonal`) is

Timed for each of neural-tangents' three implementations (Jacobian contraction, NTK-vector
products, structured derivatives), jit-compiled, compile time excluded; the best is the peer.
Standard parameterisation (weights used as stored, like PyTorch and awt). LeNet-5 is the Caffe
variant with average pooling (`lenet5-caffe-avgpool`: stax has no max-pool layer); an implementation
whose first call takes seconds is timed over fewer repetitions (at least one, about 20 s in all).

Prints one JSON line per (measure, implementation) and one with the best: median ms (an
implementation that fails, as the NTK-vector products of LeNet-5's diagonal do by asking XLA for
63 GB, is printed with "ms": null and its error).

Usage: nt_bench.py [REPS] [NET]   (NET: lenet-300-100, the default, or lenet5-caffe-avgpool; threads:
XLA uses the machine's cores)
"""
import json, statistics, sys, time

import jax, jax.numpy as jnp
import neural_tangents as nt
from neural_tangents import stax

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
net = sys.argv[2] if len(sys.argv) > 2 else "lenet-300-100"
k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
if net == "lenet-300-100":
    init_fn, apply_fn, _ = stax.serial(stax.Dense(300, parameterization="standard"), stax.Relu(),
                                       stax.Dense(100, parameterization="standard"), stax.Relu(),
                                       stax.Dense(10, parameterization="standard"))
    shape = (784,)
elif net == "lenet5-caffe-avgpool":
    conv = lambda o: stax.Conv(o, (5, 5), padding="VALID", parameterization="standard")
    pool = lambda: stax.AvgPool((2, 2), strides=(2, 2), padding="VALID")
    init_fn, apply_fn, _ = stax.serial(conv(20), stax.Relu(), pool(), conv(50), stax.Relu(), pool(), stax.Flatten(),
                                       stax.Dense(500, parameterization="standard"), stax.Relu(),
                                       stax.Dense(10, parameterization="standard"))
    shape = (28, 28, 1)
else:
    sys.exit(f"nt_bench: unknown net {net!r}")
_, params = init_fn(k1, (-1,) + shape)
x1 = jax.random.uniform(k2, (64,) + shape)
x2 = jax.random.uniform(k3, (64,) + shape)


def median_ms(fn):
    fn().block_until_ready()
    t = time.perf_counter()
    fn().block_until_ready()
    first = time.perf_counter() - t
    ts = []
    for _ in range(max(1, min(reps, int(20.0 / max(first, 1e-9))))):
        t = time.perf_counter()
        fn().block_until_ready()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


x256 = jax.random.uniform(jax.random.PRNGKey(4), (256,) + shape)
names = {1: "jacobian_contraction", 2: "ntk_vector_products", 3: "structured_derivatives"}
for measure, axes, diag, a, b in [("ntk_full", (), None, x1, x2), ("ntk_traced", (-1,), None, x1, x2),
                                  ("ntk_gram", (), None, x1, None), ("ntk_diag", (-1,), (0,), x256, None)]:
    best = None
    for impl, name in names.items():
        kernel = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=axes, diagonal_axes=diag or (), vmap_axes=0,
                                             implementation=impl))
        line = {"peer": f"neural-tangents {nt.__version__} (jax {jax.__version__})", "net": net, "measure": measure,
                "implementation": name}
        try:
            ms = median_ms(lambda: kernel(a, b, params))
        except Exception as e:  # XLA's out-of-memory error, among others: recorded, not fatal
            print(json.dumps({**line, "ms": None, "error": str(e).splitlines()[0][:120]}), flush=True)
            continue
        print(json.dumps({**line, "ms": ms}), flush=True)
        best = ms if best is None else min(best, ms)
    print(json.dumps({"peer": f"neural-tangents {nt.__version__} (jax {jax.__version__})", "net": net,
                      "measure": measure, "implementation": "best", "ms": best}), flush=True)
