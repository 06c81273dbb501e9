"""Fixed-point encoding of weighted float vectors into Z_{2**bits} and back.

A client's vector ``x`` (clipped to ±clip) becomes ``q = stochastic_round(x / step)``
with ``step = clip / 2**(quant_bits-1)``, so ``|q| <= 2**(quant_bits-1)`` and
``E[q * step] = clip(x)``. The encoded vector is ``[w*q, w]`` for an integer
weight ``w`` (e.g. a number of examples), stored mod 2**modulus_bits. The sum of
``n`` encodings is exact as long as ``n * max_weight * 2**(quant_bits-1)`` is below
``2**(modulus_bits-1)``, which :class:`SecAggParams` checks at configuration
time; :func:`decode_sum` then lifts it to signed integers and rescales. The
weighted mean's error per coordinate is below one step (4e-9 with the defaults).
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from secure_agg.params import SecAggParams


def dtype_of(params: SecAggParams) -> np.dtype:
    """The unsigned dtype of the masked vector."""
    return np.dtype(np.uint64 if params.modulus_bits == 64 else np.uint32)


def check_weight(weight: float, params: SecAggParams) -> int:
    """An integral weight in [0, max_weight], else ValueError (never a silent wrap)."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight must be a real number, got {type(weight).__name__}")
    w = float(weight)
    if not (w.is_integer() and 0 <= w <= params.max_weight):
        raise ValueError(
            f"weight {weight!r} must be an integer in [0, max_weight={params.max_weight}] "
            "(scale fractional weights yourself)"
        )
    return int(w)


def encode(
    x: npt.ArrayLike, weight: float, params: SecAggParams, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``[w * q(x), w]`` mod 2**modulus_bits as a uint array of length d + 1."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != params.vector_length:
        raise ValueError(
            f"input vector must have shape ({params.vector_length},), got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"input vector must be numeric, got dtype {arr.dtype}")
    w = check_weight(weight, params)
    d = params.vector_length
    q = np.empty(d + 1, dtype=np.int64)
    if np.issubdtype(arr.dtype, np.integer) and params.step == 1.0:
        # integers on a unit step (distributed DP hands SecAgg its noised integers): the
        # stochastic rounding below would give each value back unchanged (floor(v + U) = v
        # for U in [0, 1)), so only the clip is applied, without the random draws
        np.clip(arr, -params.clip, params.clip, out=q[:-1], casting="unsafe")
    else:
        xf = np.array(arr, dtype=np.float64)  # a private copy we can work in place on
        if not np.isfinite(xf).all():
            raise ValueError("input vector contains NaN or Inf")
        rng = rng if rng is not None else np.random.default_rng()
        np.clip(xf, -params.clip, params.clip, out=xf)
        xf *= 1.0 / params.step
        # stochastic rounding: floor(v + U[0,1)) is v rounded up with probability frac(v)
        noise = np.empty(d, dtype=np.float64)
        rng.random(out=noise)
        xf += noise
        np.floor(xf, out=xf)
        q[:-1] = xf  # exact: |values| <= 2**(quant_bits-1) < 2**53
    if w != 1:
        q[:-1] *= w  # no overflow: checked against the modulus in SecAggParams
    q[-1] = w
    if params.modulus_bits == 64:
        return q.view(np.uint64)  # two's complement: -1 -> 2**64 - 1
    return q.astype(np.uint32)  # wraps mod 2**32 by truncation


def decode_sum(total: np.ndarray, params: SecAggParams) -> tuple[np.ndarray, float]:
    """Weighted sum Σ w_u x_u (float64) and total weight Σ w_u from the unmasked sum."""
    signed = total.view(np.int64 if params.modulus_bits == 64 else np.int32)
    vec = signed[:-1].astype(np.float64)
    vec *= params.step
    return vec, float(signed[-1])
