"""Differential privacy for tessera: accounting, integer noise, rotation, distributed DP.

Layer: beside ``he``, ``psi`` and ``secure_agg`` (it imports only ``party``); ``hfl``
builds its DP strategy wrappers and its distributed-DP rounds on it.

- ``dp.accounting``: ε at δ through Google's ``dp-accounting`` (central: the sampled
  Gaussian; distributed: the discrete Gaussian's zCDP bound or Skellam's RDP bound),
  and the noise multiplier for a target ε.
- ``dp.noise``: discrete Gaussian and Skellam samplers.
- ``dp.rotation``: the randomized Walsh–Hadamard rotation.
- ``dp.distributed``: :class:`DistributedDP`, the clients' clip → rotate → round →
  noise → mod pipeline, its overflow check, and the server's inverse.

What each party learns is written in ``dp.distributed`` (distributed mode) and
``dp.accounting`` (which neighbouring relation each ε is for).
"""

from __future__ import annotations

from dp.accounting import Ledger, central_epsilon, central_noise_for, distributed_epsilon
from dp.distributed import DistributedDP

__all__ = [
    "DistributedDP",
    "Ledger",
    "central_epsilon",
    "central_noise_for",
    "distributed_epsilon",
]
