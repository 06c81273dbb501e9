"""Message-API FedYogi (``flwr.serverapp.strategy.FedYogi``): v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.typing import NDArray
from hfl.serverapp.strategy.fedopt import FedOpt


class FedYogi(FedOpt):
    """v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

    def __init__(self, *, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2, min_available_nodes: int = 2,
                 weighted_by_key: str = "num-examples", arrayrecord_key: str = "arrays",
                 configrecord_key: str = "config", train_metrics_aggr_fn: Any = None,
                 evaluate_metrics_aggr_fn: Any = None, eta: float = 1e-2, eta_l: float = 0.0316,
                 beta_1: float = 0.9, beta_2: float = 0.99,
                 tau: float = 1e-3) -> None:
        super().__init__(**parent_kwargs(FedOpt.__init__, locals()))

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        return v - (1.0 - self.beta_2) * d**2 * np.sign(v - d**2)  # type: ignore[no-any-return]
