"""The seam between HFL and ``secure_agg/``: one weighted-sum round per fit round.

The client sends ``Δ = w_local − w_global`` (flattened, float64) with weight
``n = num_examples``; the server gets only ``Σ n_k Δ_k`` and ``Σ n_k`` over the
clients that finished secure aggregation. Each round uses a fresh session id
(``<server run id>-<round>``), so a restarted server never reuses keys or seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from party import ConfigError, Party


def _secure_agg() -> Any:
    try:
        import secure_agg
    except ImportError as e:  # pragma: no cover - depends on the checkout
        raise ConfigError(f"secure_agg=True needs the secure_agg package ({e})") from None
    return secure_agg


def client_round(party: Party, server: str, delta: np.ndarray, weight: int, *, session: str,
                 params: Mapping[str, Any]) -> None:
    """Take part in one secure aggregation as a client."""
    raise ConfigError("secure aggregation is not wired in yet")


def server_round(party: Party, clients: list[str], dim: int, *, session: str,
                 params: Mapping[str, Any], timeout_s: float) -> tuple[np.ndarray, int, set[str]]:
    """Run one secure aggregation as the server: (Σ n_k Δ_k, Σ n_k, contributing clients)."""
    raise ConfigError("secure aggregation is not wired in yet")
