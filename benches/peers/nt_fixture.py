"""Peer fixture: neural-tangents' empirical NTK of LeNet-300-100 and LeNet-5-Caffe (average pools) in
float64, dense and under a sparse mask, for X1 = X2 and X1 != X2, written to
crates/awt-ntk/tests/data/neural-tangents.json, which `crates/awt-ntk/tests/neural_tangents.rs`
compares `awt_ntk::structured` against (the independent implementation of docs/checks.md).

Nothing but the kernels is stored: the weights, the masks and the inputs are given by formulas that
the Rust test computes too, index by index in awt's (PyTorch's) layout, and this script permutes them
into stax's (Dense (in, out); Conv HWIO; images NHWC, so Flatten's order differs from awt's):

  weight j (in parameter order), flat index k:  sqrt(3 / fan_in) * sin(1 + 0.37 k + 1.3 j)
  bias j, index k:                               0.1 * sin(1 + 0.37 k + 1.3 j)
  mask of weight j, index k (kept):              (2654435761 k + 40503 j + 12345) mod 2^32 < 1288490188 (≈ 0.3)
  input set s, example i, pixel e:               0.5 + 0.5 sin(0.11 e + 2.1 i + 0.7 s)

The masked net's kernel is the kernel of f(p) = apply(p ⊙ m): its Jacobian is J(p ⊙ m) diag(m), so
it counts the kept weights only, as awt's masked kernel does. Each kernel is computed by two of
neural-tangents' implementations (structured derivatives and Jacobian contraction), which must agree
to 1e-12 before anything is written.

Usage: nt_fixture.py OUT.json   (the JAX environment of `cargo xtask bench --peers`, target/peers/jax)
"""
import json, math, sys

import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import neural_tangents as nt
from neural_tangents import stax

from formulas import mask, values

N1, N2, CLASSES = 3, 2, 10






def inputs(s, n):
    e = np.arange(784, dtype=np.float64)
    return np.stack([0.5 + 0.5 * np.sin(0.11 * e + 2.1 * i + 0.7 * s) for i in range(n)])  # (n, 784)


def mlp():
    init_fn, apply_fn, _ = stax.serial(stax.Dense(300, parameterization="standard"), stax.Relu(),
                                       stax.Dense(100, parameterization="standard"), stax.Relu(),
                                       stax.Dense(10, parameterization="standard"))
    dims = [(784, 300), (300, 100), (100, 10)]
    params, masks = [], []
    for l, (i, o) in enumerate(dims):
        w, b = values(2 * l, (o, i), i, False), values(2 * l + 1, (o,), i, True)  # awt: (out, in)
        m = mask(2 * l, (o, i))
        params += [(w.T, b), ()] if l < 2 else [(w.T, b)]
        masks += [(m.T, np.ones_like(b)), ()] if l < 2 else [(m.T, np.ones_like(b))]
    return apply_fn, params, masks, lambda x: x


def lenet5_avgpool():
    conv = lambda o: stax.Conv(o, (5, 5), padding="VALID", parameterization="standard")
    pool = lambda: stax.AvgPool((2, 2), strides=(2, 2), padding="VALID")
    init_fn, apply_fn, _ = stax.serial(conv(20), stax.Relu(), pool(), conv(50), stax.Relu(), pool(), stax.Flatten(),
                                       stax.Dense(500, parameterization="standard"), stax.Relu(),
                                       stax.Dense(10, parameterization="standard"))
    params, masks = [], []
    # Convolutions: awt (out, in, kh, kw) -> stax HWIO.
    for l, (i, o) in enumerate([(1, 20), (20, 50)]):
        w, b = values(2 * l, (o, i, 5, 5), i * 25, False), values(2 * l + 1, (o,), i * 25, True)
        m = mask(2 * l, (o, i, 5, 5))
        params += [(w.transpose(2, 3, 1, 0), b), (), ()]
        masks += [(m.transpose(2, 3, 1, 0), np.ones_like(b)), (), ()]
    # fc1: awt's input index is c*16 + h*4 + w (NCHW flatten); stax's is (h*4 + w)*50 + c (NHWC).
    to_stax = lambda a: a.reshape(500, 50, 4, 4).transpose(2, 3, 1, 0).reshape(800, 500)
    w, b, m = values(4, (500, 800), 800, False), values(5, (500,), 800, True), mask(4, (500, 800))
    params += [(), (to_stax(w), b), ()]
    masks += [(), (to_stax(m), np.ones_like(b)), ()]
    w, b, m = values(6, (10, 500), 500, False), values(7, (10,), 500, True), mask(6, (10, 500))
    params += [(w.T, b)]
    masks += [(m.T, np.ones_like(b))]
    return apply_fn, params, masks, lambda x: x.reshape(-1, 28, 28, 1)


def kernels(net):
    apply_fn, params, masks, shape = net
    params = jax.tree_util.tree_map(jnp.asarray, params)
    masks = jax.tree_util.tree_map(jnp.asarray, masks)
    x1, x2 = shape(jnp.asarray(inputs(1, N1))), shape(jnp.asarray(inputs(2, N2)))
    out = {}
    for masked in [False, True]:
        f = (lambda p, x: apply_fn(jax.tree_util.tree_map(lambda a, b: a * b, p, masks), x)) if masked else apply_fn
        for same in [True, False]:
            ks = []
            for impl in [nt.NtkImplementation.STRUCTURED_DERIVATIVES, nt.NtkImplementation.JACOBIAN_CONTRACTION]:
                fn = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=impl)
                k = np.asarray(fn(x1, None if same else x2, params))  # (n1, n2, classes, classes)
                ks.append(k.transpose(0, 2, 1, 3).reshape(N1 * CLASSES, -1))  # awt: (n1*k, n2*k)
            err = np.abs(ks[0] - ks[1]).max() / np.abs(ks[1]).max()
            assert err < 1e-12, f"neural-tangents' implementations disagree: {err}"
            out[f"{'masked' if masked else 'dense'}-{'same' if same else 'pair'}"] = {
                "shape": list(ks[0].shape), "kernel": ks[0].reshape(-1).tolist()}
    return out


fixture = {
    "made_by": f"benches/peers/nt_fixture.py, neural-tangents {nt.__version__}, jax {jax.__version__}, float64",
    "n1": N1, "n2": N2,
    "lenet-300-100": kernels(mlp()),
    "lenet5-caffe-avgpool": kernels(lenet5_avgpool()),
}
with open(sys.argv[1], "w") as fh:
    json.dump(fixture, fh, indent=1)
    fh.write("\n")
print(f"wrote {sys.argv[1]}")
