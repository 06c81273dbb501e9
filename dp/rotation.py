"""The randomized Walsh–Hadamard rotation used by distributed DP (Kairouz et al. 2021, §4).

``rotate(x, seed)`` pads ``x`` to the next power of two ``D``, flips each coordinate's
sign by a seeded Rademacher vector and applies the orthonormal Hadamard transform
``H / sqrt(D)``. The map is orthogonal, so it keeps the L2 norm exactly, and it
spreads any vector's mass evenly: each output coordinate is a sum of ``D`` terms with
random signs, so its magnitude is about ``||x|| / sqrt(D)`` whatever the input looked
like. That flattening is what lets a small modulus hold the quantised sum
(``dp.distributed`` sizes the modulus by it).

The seed is public to the round (every client and the server use the same one, drawn
fresh each round): the rotation is a conditioning step, not a secret.
"""

from __future__ import annotations

import numpy as np


def padded_dim(d: int) -> int:
    """The smallest power of two ``>= d`` (at least 1)."""
    if d < 1:
        raise ValueError(f"dimension must be >= 1, got {d}")
    return 1 << (d - 1).bit_length()


def fwht(a: np.ndarray) -> np.ndarray:
    """The orthonormal Walsh–Hadamard transform of a length-2^k float vector (a copy)."""
    n = a.shape[0]
    if n & (n - 1):
        raise ValueError(f"length must be a power of two, got {n}")
    x = np.array(a, dtype=np.float64)
    _fwht_inplace(x)
    x *= 1.0 / np.sqrt(n)
    return x


def _fwht_inplace(x: np.ndarray) -> None:
    """Unnormalised butterflies in place: log2(n) passes, one half-size temporary each."""
    n = x.shape[0]
    tmp = np.empty(n // 2 if n > 1 else 1)
    h = 1
    while h < n:
        v = x.reshape(-1, 2, h)
        top, bottom = v[:, 0, :], v[:, 1, :]
        t = tmp[: n // 2].reshape(-1, h)
        np.copyto(t, top)
        top += bottom
        np.subtract(t, bottom, out=bottom)
        h *= 2


def _signs(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5254]))
    return np.where(rng.integers(0, 2, n, dtype=np.int8) == 1, 1.0, -1.0)


def rotate(x: np.ndarray, seed: int) -> np.ndarray:
    """``H D_seed pad(x) / sqrt(D)``: an orthogonal rotation of ``x`` into length ``padded_dim``."""
    v = np.asarray(x, dtype=np.float64).ravel()
    n = padded_dim(v.shape[0])
    padded = np.zeros(n)
    padded[: v.shape[0]] = v
    padded *= _signs(seed, n)
    _fwht_inplace(padded)
    padded *= 1.0 / np.sqrt(n)
    return padded


def unrotate(y: np.ndarray, seed: int, d: int) -> np.ndarray:
    """The inverse of :func:`rotate`, cut back to the first ``d`` coordinates."""
    v = np.asarray(y, dtype=np.float64)
    n = v.shape[0]
    if n != padded_dim(d):
        raise ValueError(f"rotated length {n} does not match dimension {d} (want {padded_dim(d)})")
    out = np.array(v, dtype=np.float64)
    _fwht_inplace(out)
    out *= _signs(seed, n) * (1.0 / np.sqrt(n))
    return out[:d]
