"""Message-API FedAdagrad (``flwr.serverapp.strategy.FedAdagrad``): v_t = v_{t−1} + Δ_t² (β1 = β2 = 0)."""

from __future__ import annotations

from typing import Any

from hfl._kwargs import parent_kwargs
from hfl.common.typing import NDArray
from hfl.serverapp.strategy.fedopt import FedOpt


class FedAdagrad(FedOpt):
    """v_t = v_{t−1} + Δ_t² (β1 = β2 = 0)."""

    def __init__(self, *, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2, min_available_nodes: int = 2,
                 weighted_by_key: str = "num-examples", arrayrecord_key: str = "arrays",
                 configrecord_key: str = "config", train_metrics_aggr_fn: Any = None,
                 evaluate_metrics_aggr_fn: Any = None, eta: float = 1e-1, eta_l: float = 1e-1,
                 tau: float = 1e-3) -> None:
        super().__init__(**parent_kwargs(FedOpt.__init__, locals(), beta_1=0.0, beta_2=0.0))

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        return v + d**2  # type: ignore[no-any-return]
