"""FedAdam (Reddi et al. 2021): Flower's ``flwr.server.strategy.FedAdam``, same defaults and numbers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.typing import MetricsAggregationFn, NDArrays, Parameters, Scalar
from hfl.server.strategy.fedavg import EvaluateFn
from hfl.server.strategy.fedopt import FedOpt


class FedAdam(FedOpt):
    """v_t = β2 v_{t−1} + (1 − β2) Δ_t², with Flower's bias-corrected step size."""

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
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-9,
    ) -> None:
        super().__init__(**parent_kwargs(FedOpt.__init__, locals()))

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        return [self.beta_2 * x + (1 - self.beta_2) * np.multiply(y, y) for x, y in zip(v, delta_t, strict=True)]

    def step_size(self, server_round: int) -> float:
        # a NumPy float64, as in Flower: with float32 models the step is then taken in float64
        eta_norm: float = (self.eta * np.sqrt(1 - np.power(self.beta_2, server_round + 1.0))
                           / (1 - np.power(self.beta_1, server_round + 1.0)))
        return eta_norm
