"""FedAvg (McMahan et al., 2017): the example-weighted mean of the clients' models.

Flower's ``flwr.server.strategy.FedAvg``: same constructor, sampling
(``num_fit_clients`` returns ``(sample_size, min_num_clients)``), aggregation
(``aggregate_inplace`` or ``aggregate``) and metrics hooks, so results match
Flower's number for number.

    w_{t+1} = Σ_k n_k w_k / Σ_k n_k over the clients that returned a valid result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import numpy as np

from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Metrics,
    MetricsAggregationFn,
    NDArrays,
    Parameters,
    Scalar,
)
from hfl.server.strategy.aggregate import aggregate, aggregate_inplace, weighted_loss_avg
from hfl.server.strategy.strategy import Strategy

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy

log = logging.getLogger("hfl.strategy")

EvaluateFn = Callable[[int, NDArrays, dict[str, Scalar]], "tuple[float, dict[str, Scalar]] | None"]

WARNING_MIN_AVAILABLE_CLIENTS_TOO_LOW = (
    "Setting `min_available_clients` lower than `min_fit_clients` or `min_evaluate_clients` "
    "can cause the server to fail when there are too few clients connected to the server. "
    "`min_available_clients` must be set to a value larger than or equal to the values of "
    "`min_fit_clients` and `min_evaluate_clients`."
)


class SampleSize(tuple[int, int]):
    """Flower's ``(sample_size, min_num_clients)`` pair.

    ``int()`` of it is the sample size, for code written against tessera's earlier
    ``num_fit_clients`` that returned an int (``hfl.simulation`` still reads it so).
    """

    def __new__(cls, sample_size: int, min_num_clients: int) -> SampleSize:
        return super().__new__(cls, (sample_size, min_num_clients))

    def __int__(self) -> int:
        return int(self[0])


def _as_parameters(p: Parameters | NDArrays | None) -> Parameters | None:
    """tessera also accepts a list of arrays where Flower wants ``Parameters``."""
    if p is None or isinstance(p, Parameters):
        return p
    if isinstance(p, (list, tuple)) and all(isinstance(a, np.ndarray) for a in p):
        return ndarrays_to_parameters(list(p))
    raise TypeError(f"initial_parameters must be Parameters (ndarrays_to_parameters(...)), "
                    f"got {type(p).__name__}")


def _config(on_config_fn: Callable[[int], dict[str, Scalar]] | None,
            server_round: int) -> dict[str, Scalar]:
    return {} if on_config_fn is None else on_config_fn(server_round)


Ins = TypeVar("Ins", FitIns, EvaluateIns)


def _to_sample(ins: Ins, num_clients: Callable[[int], tuple[int, int]],
               client_manager: ClientManager) -> list[tuple[ClientProxy, Ins]]:
    """``ins`` for each client of a sample sized by ``num_clients`` (``num_fit_clients``...)."""
    sample_size, min_num_clients = num_clients(client_manager.num_available())
    clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num_clients)
    return [(client, ins) for client in clients]


class FedAvgOptions(TypedDict, total=False):
    """FedAvg's constructor arguments that its subclasses forward as ``**kwargs`` (all but ``inplace``).

    The types only: the defaults are FedAvg's, and ``hfl._kwargs.extends`` shows them in
    each subclass's signature.
    """

    fraction_fit: float
    fraction_evaluate: float
    min_fit_clients: int
    min_evaluate_clients: int
    min_available_clients: int
    evaluate_fn: EvaluateFn | None
    on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None
    on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None
    accept_failures: bool
    initial_parameters: Parameters | None
    fit_metrics_aggregation_fn: MetricsAggregationFn | None
    evaluate_metrics_aggregation_fn: MetricsAggregationFn | None


class FedAvg(Strategy):
    """Federated Averaging strategy (Flower's constructor arguments and defaults)."""

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
        inplace: bool = True,
    ) -> None:
        super().__init__()
        for nm, fr in (("fraction_fit", fraction_fit), ("fraction_evaluate", fraction_evaluate)):
            if not 0.0 <= fr <= 1.0:
                raise ValueError(f"{nm} must be in [0, 1], got {fr}")
        if min_fit_clients > min_available_clients or min_evaluate_clients > min_available_clients:
            log.warning(WARNING_MIN_AVAILABLE_CLIENTS_TOO_LOW)
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.evaluate_fn = evaluate_fn
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn
        self.accept_failures = accept_failures
        self.initial_parameters = _as_parameters(initial_parameters)
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self.inplace = inplace

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def num_fit_clients(self, num_available_clients: int) -> tuple[int, int]:
        """Return the sample size and the required number of available clients."""
        num_clients = int(num_available_clients * self.fraction_fit)
        return SampleSize(max(num_clients, self.min_fit_clients), self.min_available_clients)

    def num_evaluation_clients(self, num_available_clients: int) -> tuple[int, int]:
        """Use a fraction of available clients for evaluation."""
        num_clients = int(num_available_clients * self.fraction_evaluate)
        return SampleSize(max(num_clients, self.min_evaluate_clients), self.min_available_clients)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Initialize global model parameters (handed out once, then forgotten, as Flower)."""
        initial_parameters = self.initial_parameters
        self.initial_parameters = None  # Don't keep initial parameters in memory
        return initial_parameters

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        """Evaluate model parameters using an evaluation function."""
        if self.evaluate_fn is None:
            return None
        eval_res = self.evaluate_fn(server_round, parameters_to_ndarrays(parameters), {})
        if eval_res is None:
            return None
        loss, metrics = eval_res
        return loss, metrics

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        """Configure the next round of training."""
        fit_ins = FitIns(parameters, _config(self.on_fit_config_fn, server_round))
        return _to_sample(fit_ins, self.num_fit_clients, client_manager)

    def configure_evaluate(self, server_round: int, parameters: Parameters,
                           client_manager: ClientManager) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Configure the next round of evaluation."""
        if self.fraction_evaluate == 0.0:
            return []
        evaluate_ins = EvaluateIns(parameters, _config(self.on_evaluate_config_fn, server_round))
        return _to_sample(evaluate_ins, self.num_evaluation_clients, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Aggregate fit results using weighted average, then the server's step (:meth:`server_update`)."""
        if not self._usable(results, failures):
            return None, {}
        return self.aggregate_mean(server_round, self.weighted_mean(results),
                                   sum(r.num_examples for _, r in results),
                                   [(res.num_examples, res.metrics) for _, res in results])

    def _usable(self, results: list[Any], failures: list[Any]) -> bool:
        """Flower's rule: aggregate only with results, and with no failures unless accepted."""
        return bool(results) and (self.accept_failures or not failures)

    def weighted_mean(self, results: list[tuple[ClientProxy, FitRes]]) -> NDArrays:
        """Σ_k n_k w_k / Σ_k n_k (in place unless ``inplace=False``, as Flower)."""
        if self.inplace:
            return aggregate_inplace(results)
        return aggregate([(parameters_to_ndarrays(fit_res.parameters), fit_res.num_examples)
                          for _, fit_res in results])

    def _metrics(self, server_round: int, results: list[tuple[int, Metrics]],
                 fn: MetricsAggregationFn | None, name: str) -> dict[str, Scalar]:
        """``fn`` over the clients' (num_examples, metrics); without one, ``{}`` and Flower's
        warning in round 1."""
        if fn:
            return fn(results)
        if server_round == 1:
            log.warning("No %s provided", name)
        return {}

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Aggregate evaluation losses using weighted average."""
        if not self._usable(results, failures):
            return None, {}
        loss_aggregated = weighted_loss_avg(
            [(evaluate_res.num_examples, evaluate_res.loss) for _, evaluate_res in results])
        return loss_aggregated, self._metrics(
            server_round, [(res.num_examples, res.metrics) for _, res in results],
            self.evaluate_metrics_aggregation_fn, "evaluate_metrics_aggregation_fn")

    # -- tessera: secure aggregation ------------------------------------------------------
    def server_update(self, server_round: int, fedavg_result: NDArrays) -> NDArrays:
        """The server's step from the weighted mean (FedAvg: the mean itself; FedAvgM, FedOpt: theirs)."""
        return fedavg_result

    def aggregate_mean(
        self, server_round: int, mean: NDArrays, num_examples: int,
        metrics: list[tuple[int, Metrics]],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """What :meth:`aggregate_fit` returns, given only the clients' weighted mean (secure aggregation)."""
        new = self.server_update(server_round, [np.asarray(m) for m in mean])
        return ndarrays_to_parameters(new), self._metrics(
            server_round, metrics, self.fit_metrics_aggregation_fn, "fit_metrics_aggregation_fn")

    @property
    def supports_secure_aggregation(self) -> bool:
        """True unless a subclass replaced :meth:`aggregate_fit` with its own rule."""
        return type(self).aggregate_fit in SECURE_AGGREGATE_FITS

    def _hfl_attach(self, parameters: NDArrays) -> None:
        """Called by tessera's server with the global model before round 1 (or after a resume)."""
        return None


#: The aggregate_fit methods whose result :meth:`FedAvg.aggregate_mean` reproduces from the
#: weighted mean alone (the built-in rules all use FedAvg's, with their own ``server_update``; a
#: rule with its own aggregate_fit adds it here): a strategy using one of them may run with
#: secure aggregation.
SECURE_AGGREGATE_FITS: set[object] = {FedAvg.aggregate_fit}
