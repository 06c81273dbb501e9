"""FedYogi (Reddi et al. 2021): Flower's ``flwr.server.strategy.FedYogi``, same defaults and numbers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.typing import MetricsAggregationFn, NDArrays, Parameters, Scalar
from hfl.server.strategy.fedavg import EvaluateFn
from hfl.server.strategy.fedopt import FedOpt


class FedYogi(FedOpt):
    """v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        eta: float = 1e-2,
        eta_l: float = 0.0316,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        super().__init__(**parent_kwargs(FedOpt.__init__, locals()))

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        return [x - (1.0 - self.beta_2) * np.multiply(y, y) * np.sign(x - np.multiply(y, y)) for x, y in zip(v, delta_t, strict=True)]
