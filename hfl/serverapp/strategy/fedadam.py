"""Message-API FedAdam (``flwr.serverapp.strategy.FedAdam``): v_t = β2 v_{t−1} + (1 − β2) Δ_t², bias-corrected step."""

from __future__ import annotations

from typing import Any

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.typing import NDArray
from hfl.serverapp.strategy.fedopt import FedOpt


class FedAdam(FedOpt):
    """v_t = β2 v_{t−1} + (1 − β2) Δ_t², bias-corrected step."""

    def __init__(self, *, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2, min_available_nodes: int = 2,
                 weighted_by_key: str = "num-examples", arrayrecord_key: str = "arrays",
                 configrecord_key: str = "config", train_metrics_aggr_fn: Any = None,
                 evaluate_metrics_aggr_fn: Any = None, eta: float = 1e-1, eta_l: float = 1e-1,
                 beta_1: float = 0.9, beta_2: float = 0.99,
                 tau: float = 1e-3) -> None:
        super().__init__(**parent_kwargs(FedOpt.__init__, locals()))

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        return self.beta_2 * v + (1 - self.beta_2) * d**2  # type: ignore[no-any-return]

    def _eta(self, server_round: int) -> float:
        # a NumPy float64, as in Flower: with float32 models the step is then taken in float64
        eta_norm: float = (self.eta * np.sqrt(1 - np.power(self.beta_2, server_round + 1.0))
                           / (1 - np.power(self.beta_1, server_round + 1.0)))
        return eta_norm
