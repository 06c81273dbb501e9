"""FedAvgM (Hsu et al., 2019): server momentum on the FedAvg pseudo-gradient (Flower's).

    Δ_t = w_t − mean_t;   v_t = β v_{t−1} + Δ_t (v_1 = Δ_1);   w_{t+1} = w_t − η v_t

``w_t`` is ``initial_parameters`` in round 1 and the previous result after that,
exactly as Flower's ``FedAvgM`` (which keeps it in ``self.initial_parameters``).
Without ``initial_parameters`` tessera's server hands the strategy the model it
got from a client before round 1 (Flower would fail its assertion there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import FitRes, MetricsAggregationFn, NDArrays, Parameters, Scalar
from hfl.server.strategy.aggregate import aggregate
from hfl.server.strategy.fedavg import SECURE_AGGREGATE_FITS, EvaluateFn, FedAvg

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy


class FedAvgM(FedAvg):
    """Federated Averaging with server momentum (Flower's arguments and defaults)."""

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
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.0,
    ) -> None:
        super().__init__(**parent_kwargs(FedAvg.__init__, locals()))
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.server_opt: bool = (self.server_momentum != 0.0) or (self.server_learning_rate != 1.0)
        self.momentum_vector: NDArrays | None = None

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Initialize global model parameters (kept: they are w_1 of the update)."""
        return self.initial_parameters

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Aggregate fit results using weighted average, then the momentum step."""
        if not results:
            return None, {}
        if not self.accept_failures and failures:
            return None, {}
        weights_results = [(parameters_to_ndarrays(fit_res.parameters), fit_res.num_examples)
                           for _, fit_res in results]
        fedavg_result = self.server_update(server_round, aggregate(weights_results))
        return ndarrays_to_parameters(fedavg_result), self._fit_metrics(
            server_round, [(res.num_examples, res.metrics) for _, res in results])

    def server_update(self, server_round: int, fedavg_result: NDArrays) -> NDArrays:
        if not self.server_opt:
            return fedavg_result
        if self.initial_parameters is None:
            raise RuntimeError(
                "FedAvgM with server_learning_rate != 1 or server_momentum != 0 needs the "
                "current model: pass initial_parameters=ndarrays_to_parameters(...)")
        initial_weights = parameters_to_ndarrays(self.initial_parameters)
        pseudo_gradient: NDArrays = [x - y for x, y in zip(initial_weights, fedavg_result, strict=True)]
        if self.server_momentum > 0.0:
            if server_round > 1 and self.momentum_vector:
                self.momentum_vector = [self.server_momentum * x + y
                                        for x, y in zip(self.momentum_vector, pseudo_gradient, strict=True)]
            else:
                self.momentum_vector = pseudo_gradient
            pseudo_gradient = self.momentum_vector
        fedavg_result = [x - self.server_learning_rate * y
                         for x, y in zip(initial_weights, pseudo_gradient, strict=True)]
        self.initial_parameters = ndarrays_to_parameters(fedavg_result)
        return fedavg_result

    def _hfl_attach(self, parameters: NDArrays) -> None:
        if self.initial_parameters is None:
            self.initial_parameters = ndarrays_to_parameters(parameters)

    def state_dict(self) -> dict[str, NDArrays]:
        out: dict[str, NDArrays] = {}
        if self.momentum_vector is not None:
            out["momentum"] = list(self.momentum_vector)
        if self.server_opt and self.initial_parameters is not None:
            out["current"] = parameters_to_ndarrays(self.initial_parameters)
        return out

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        m = state.get("momentum")
        self.momentum_vector = None if m is None else [np.asarray(a) for a in m]
        if "current" in state:
            self.initial_parameters = ndarrays_to_parameters(state["current"])


SECURE_AGGREGATE_FITS.add(FedAvgM.aggregate_fit)
