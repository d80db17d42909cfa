"""The formulas the peer fixtures (nt_fixture.py, torchattacks_fixture.py, torch_train_fixture.py,
pruners_fixture.py) and their Rust tests (`awt_base::testing::formula_values`, `formula_mask`,
`formula_images`; `awt_nets::testing::formula_net`) both compute, so that a fixture holds results
only: parameter j (forward order, weight before bias), flat index k in PyTorch's layout.
"""
import math

import numpy as np


def values(j, shape, fan_in, bias):
    """sqrt(3 / fan_in) * sin(1 + 0.37 k + 1.3 j) for a weight, 0.1 * sin(...) for a bias (float64)."""
    k = np.arange(int(np.prod(shape)), dtype=np.float64)
    scale = 0.1 if bias else math.sqrt(3.0 / fan_in)
    return (scale * np.sin(1.0 + 0.37 * k + 1.3 * j)).reshape(shape)


def mask(j, shape):
    """1.0 where (2654435761 k + 40503 j + 12345) mod 2^32 < 1288490188 (about 30 % kept), else 0.0."""
    k = np.arange(int(np.prod(shape)), dtype=np.uint64)
    h = (k * np.uint64(2654435761) + np.uint64(40503 * j + 12345)) % np.uint64(2**32)
    return (h < np.uint64(1288490188)).astype(np.float64).reshape(shape)
