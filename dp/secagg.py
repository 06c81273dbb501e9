"""Distributed DP over SecAgg+: the integers of :class:`dp.DistributedDP` through ``secure_agg``.

A client's noised vector ``u`` (in ``Z_{2**bits}``) is lifted to its centred integers
``v ∈ [-2**(bits-1), 2**(bits-1))`` and handed to SecAgg as an integer vector with
``clip = 2**(bits-1)`` and ``quant_bits = bits``: SecAgg's step is then exactly 1 (integers
on a unit step skip its stochastic rounding, which would return them unchanged) and its
clip never bites, so SecAgg carries ``v`` unchanged and returns ``Σ v`` over the survivors
(weight 1 each). Since ``Σ v ≡ Σ u (mod 2**bits)``, the server's :func:`server_sum` reduces it mod
``2**bits`` and decodes it as if the sum had been taken in ``Z_{2**bits}`` directly.
SecAgg's own overflow check (``n · 2**(bits-1) < 2**31``) then holds for ``n < 2**(32-bits)``.

On the wire each value is a SecAgg uint32 (``modulus_bits = 32``); the DP modulus,
the one the noise and the overflow bound are sized for, is ``2**bits``.

The server never holds an un-noised sum: every masked vector it receives already
contains its client's noise, and the unmasked total is the sum of noised vectors.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from dp.distributed import DistributedDP


def round_seed(session: str, round: int) -> int:
    """The rotation seed of a round: public, fresh per round, the same at every party."""
    h = hashlib.sha256(f"tessera-dp-rotation/{session}/{round}".encode()).digest()
    return int.from_bytes(h[:8], "big")


def secagg_settings(cfg: DistributedDP) -> dict[str, Any]:
    """The SecAggParams fields that make SecAgg carry ``cfg``'s integers exactly."""
    if cfg.bits > 30:
        raise ValueError("distributed DP over SecAgg takes bits <= 30")
    return {
        "vector_length": cfg.padded,
        "clip": float(1 << (cfg.bits - 1)),
        "quant_bits": cfg.bits,
        "modulus_bits": 32,
        "max_weight": 1,
    }


def client_input(
    cfg: DistributedDP, update: np.ndarray, seed: int, rng: np.random.Generator
) -> np.ndarray:
    """A client's SecAgg input: its clipped, rotated, rounded, noised update (centred ints,
    int64: on SecAgg's unit step integers skip its stochastic rounding, which would leave
    them unchanged)."""
    return cfg.encode_centred(update, seed, rng).astype(np.int64)


def server_sum(cfg: DistributedDP, secagg_sum: np.ndarray, seed: int) -> np.ndarray:
    """SecAgg's Σ v → the noised sum of the survivors' clipped updates (length ``dim``)."""
    return cfg.decode(np.asarray(secagg_sum, dtype=np.float64), seed)
