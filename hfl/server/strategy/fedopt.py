"""Adaptive server optimisers of Reddi et al., "Adaptive Federated Optimization" (ICLR 2021).

Flower's ``FedOpt`` family, number for number. With Δ_t = mean_t − x_t (the FedAvg
pseudo-gradient), m_0 = v_0 = 0:

    m_t = β1 m_{t−1} + (1 − β1) Δ_t
    FedAdagrad: v_t = v_{t−1} + Δ_t²                       (β1 = β2 = 0)
    FedYogi:    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)
    FedAdam:    v_t = β2 v_{t−1} + (1 − β2) Δ_t², and η scaled by
                √(1 − β2^{t+1}) / (1 − β1^{t+1})           (Flower's bias correction)
    x_{t+1} = x_t + η m_t / (√v_t + τ)

``initial_parameters`` is optional here (Flower requires it): without it tessera's
server hands the strategy the model it got from a client before round 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import FitRes, MetricsAggregationFn, NDArrays, Parameters, Scalar
from hfl.server.strategy.fedavg import SECURE_AGGREGATE_FITS, EvaluateFn, FedAvg

if TYPE_CHECKING:
    from hfl.server.client_proxy import ClientProxy


class FedOpt(FedAvg):
    """Federated Optim strategy: the base of FedAdagrad, FedAdam and FedYogi."""

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
        beta_1: float = 0.0,
        beta_2: float = 0.0,
        tau: float = 1e-9,
    ) -> None:
        super().__init__(**parent_kwargs(FedAvg.__init__, locals()))
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0) or tau <= 0 or eta <= 0:
            raise ValueError(f"need 0 <= beta_1, beta_2 < 1, tau > 0, eta > 0; got "
                             f"beta_1={beta_1}, beta_2={beta_2}, tau={tau}, eta={eta}")
        self.current_weights: NDArrays | None = (
            None if self.initial_parameters is None else parameters_to_ndarrays(self.initial_parameters))
        self.eta = eta
        self.eta_l = eta_l
        self.tau = tau
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.m_t: NDArrays | None = None
        self.v_t: NDArrays | None = None

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        """v_t from v_{t−1} and Δ_t (each subclass's rule)."""
        raise NotImplementedError(f"{type(self).__name__} defines no second-moment rule; "
                                  "use FedAdagrad, FedAdam or FedYogi")

    def step_size(self, server_round: int) -> float:
        return self.eta

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Aggregate fit results using weighted average, then the adaptive step."""
        fedavg_parameters_aggregated, metrics_aggregated = super().aggregate_fit(
            server_round=server_round, results=results, failures=failures)
        if fedavg_parameters_aggregated is None:
            return None, {}
        new = self.server_update(server_round, parameters_to_ndarrays(fedavg_parameters_aggregated))
        return ndarrays_to_parameters(new), metrics_aggregated

    def server_update(self, server_round: int, fedavg_result: NDArrays) -> NDArrays:
        if self.current_weights is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the current model: pass "
                "initial_parameters=ndarrays_to_parameters(...)")
        delta_t: NDArrays = [x - y for x, y in zip(fedavg_result, self.current_weights, strict=True)]
        if not self.m_t:
            self.m_t = [np.zeros_like(x) for x in delta_t]
        self.m_t = [np.multiply(self.beta_1, x) + (1 - self.beta_1) * y
                    for x, y in zip(self.m_t, delta_t, strict=True)]
        if not self.v_t:
            self.v_t = [np.zeros_like(x) for x in delta_t]
        self.v_t = self.second_moment(self.v_t, delta_t)
        eta = self.step_size(server_round)
        new_weights = [x + eta * y / (np.sqrt(z) + self.tau)
                       for x, y, z in zip(self.current_weights, self.m_t, self.v_t, strict=True)]
        self.current_weights = new_weights
        return new_weights

    def _hfl_attach(self, parameters: NDArrays) -> None:
        if self.current_weights is None:
            self.current_weights = [np.asarray(a) for a in parameters]

    def state_dict(self) -> dict[str, NDArrays]:
        out: dict[str, NDArrays] = {}
        if self.m_t is not None and self.v_t is not None:
            out["m_t"], out["v_t"] = list(self.m_t), list(self.v_t)
        if self.current_weights is not None:
            out["current_weights"] = list(self.current_weights)
        return out

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        if "m_t" in state and "v_t" in state:
            self.m_t = [np.asarray(a) for a in state["m_t"]]
            self.v_t = [np.asarray(a) for a in state["v_t"]]
        if "current_weights" in state:
            self.current_weights = [np.asarray(a) for a in state["current_weights"]]


SECURE_AGGREGATE_FITS.add(FedOpt.aggregate_fit)
