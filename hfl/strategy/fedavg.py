"""FedAvg (McMahan et al., 2017): the example-weighted mean of the clients' models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hfl.common import Config, Metrics, NDArrays, Parameters, parameters_to_ndarrays
from hfl.strategy.aggregate import cast_like, weighted_average
from hfl.strategy.base import EvaluateResults, Failures, FitResults, Strategy

EvaluateFn = Callable[[int, NDArrays, Config], "tuple[float, Metrics] | None"]
MetricsAggregationFn = Callable[[list[tuple[int, Metrics]]], Metrics]


def sample(clients: list[str], k: int, rng: np.random.Generator) -> list[str]:
    """``k`` distinct clients, chosen by ``rng`` from the sorted list; returned sorted."""
    pool = sorted(clients)
    k = min(k, len(pool))
    idx = rng.choice(len(pool), size=k, replace=False)
    return sorted(pool[i] for i in idx)


class FedAvg(Strategy):
    """Federated averaging with Flower's constructor arguments.

    w_{t+1} = Σ_k n_k w_k / Σ_k n_k over the clients that returned a valid result.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], Config] | None = None,
        on_evaluate_config_fn: Callable[[int], Config] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | NDArrays | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
    ) -> None:
        for nm, fr in (("fraction_fit", fraction_fit), ("fraction_evaluate", fraction_evaluate)):
            if not 0.0 <= fr <= 1.0:
                raise ValueError(f"{nm} must be in [0, 1], got {fr}")
        if min_available_clients < max(min_fit_clients, min_evaluate_clients) and min_fit_clients:
            min_available_clients = max(min_fit_clients, min_evaluate_clients)
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.evaluate_fn = evaluate_fn
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn
        self.accept_failures = accept_failures
        self.initial_parameters = (
            None if initial_parameters is None else parameters_to_ndarrays(initial_parameters)
        )
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self._current: NDArrays | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def initialize_parameters(self) -> NDArrays | None:
        return self.initial_parameters

    def num_available_required(self) -> int:
        return self.min_available_clients

    def num_fit_clients(self, num_available: int) -> int:
        return max(int(num_available * self.fraction_fit), self.min_fit_clients)

    def num_evaluation_clients(self, num_available: int) -> int:
        return max(int(num_available * self.fraction_evaluate), self.min_evaluate_clients)

    def configure_fit(
        self, server_round: int, parameters: NDArrays, clients: list[str], rng: np.random.Generator
    ) -> list[tuple[str, Config]]:
        self._current = parameters
        config: Config = {}
        if self.on_fit_config_fn is not None:
            config = dict(self.on_fit_config_fn(server_round))
        chosen = sample(clients, self.num_fit_clients(len(clients)), rng)
        return [(c, dict(config)) for c in chosen]

    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: Failures
    ) -> tuple[NDArrays | None, Metrics]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        mean = weighted_average([(r.parameters, r.num_examples) for _, r in results])
        metrics = [(r.num_examples, r.metrics) for _, r in results]
        total = sum(r.num_examples for _, r in results)
        return self.aggregate_mean(server_round, mean, total, metrics)

    def aggregate_mean(
        self, server_round: int, mean: NDArrays, num_examples: int, metrics: list[tuple[int, Metrics]]
    ) -> tuple[NDArrays | None, Metrics]:
        new = self.update(server_round, [np.asarray(m, np.float64) for m in mean])
        ref = self._current if self._current is not None else mean
        agg = self.fit_metrics_aggregation_fn(metrics) if self.fit_metrics_aggregation_fn else {}
        return cast_like(new, ref), agg

    def update(self, server_round: int, mean: list[np.ndarray]) -> list[np.ndarray]:
        """Server step from the weighted mean (FedAvg: the mean itself)."""
        return mean

    def configure_evaluate(
        self, server_round: int, parameters: NDArrays, clients: list[str], rng: np.random.Generator
    ) -> list[tuple[str, Config]]:
        if self.fraction_evaluate == 0.0:
            return []
        config: Config = {}
        if self.on_evaluate_config_fn is not None:
            config = dict(self.on_evaluate_config_fn(server_round))
        chosen = sample(clients, self.num_evaluation_clients(len(clients)), rng)
        return [(c, dict(config)) for c in chosen]

    def aggregate_evaluate(
        self, server_round: int, results: EvaluateResults, failures: Failures
    ) -> tuple[float | None, Metrics]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        total = sum(r.num_examples for _, r in results)
        if total <= 0:
            return None, {}
        loss = sum(r.num_examples * r.loss for _, r in results) / total
        agg: Metrics = {}
        if self.evaluate_metrics_aggregation_fn is not None:
            agg = self.evaluate_metrics_aggregation_fn([(r.num_examples, r.metrics) for _, r in results])
        return float(loss), agg

    def evaluate(self, server_round: int, parameters: NDArrays) -> tuple[float, Metrics] | None:
        if self.evaluate_fn is None:
            return None
        out = self.evaluate_fn(server_round, parameters, {})
        if out is None:
            return None
        loss, metrics = out
        return float(loss), dict(metrics)
