"""Flower's legacy ``Strategy`` interface, with Flower's method names and signatures.

The server calls, each round: :meth:`Strategy.configure_fit` (which clients, with
which :class:`~hfl.common.FitIns`), :meth:`Strategy.aggregate_fit` over
``list[tuple[ClientProxy, FitRes]]`` (``FitRes.parameters`` a
:class:`~hfl.common.Parameters`), :meth:`Strategy.evaluate` (central), then
:meth:`Strategy.configure_evaluate` / :meth:`Strategy.aggregate_evaluate`
(federated). A strategy written for ``flwr.server.strategy.Strategy`` runs here
unchanged.

tessera adds three optional hooks, used only by the built-in strategies:
``aggregate_mean`` (secure aggregation hands the server only the weighted mean
of the clients' models, never one client's), and ``state_dict`` /
``load_state_dict`` (server optimiser state in each round's checkpoint).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from hfl import common

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy


class Strategy(ABC):
    """Abstract base class for server strategy implementations (Flower's)."""

    @abstractmethod
    def initialize_parameters(self, client_manager: ClientManager) -> common.Parameters | None:
        """Initial global model parameters, or None to ask one client for its own."""

    @abstractmethod
    def configure_fit(
        self, server_round: int, parameters: common.Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, common.FitIns]]:
        """The next round of training: which clients, with which instructions."""

    @abstractmethod
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, common.FitRes]],
        failures: list[tuple[ClientProxy, common.FitRes] | BaseException],
    ) -> tuple[common.Parameters | None, dict[str, common.Scalar]]:
        """New global parameters from the training results (None: keep the model)."""

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, parameters: common.Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, common.EvaluateIns]]:
        """The next round of federated evaluation."""

    @abstractmethod
    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, common.EvaluateRes]],
        failures: list[tuple[ClientProxy, common.EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, common.Scalar]]:
        """Aggregate the evaluation results."""

    @abstractmethod
    def evaluate(
        self, server_round: int, parameters: common.Parameters
    ) -> tuple[float, dict[str, common.Scalar]] | None:
        """Evaluate the current model parameters on the server (None: no central data)."""

    # -- tessera extensions (optional) -----------------------------------------------------
    def aggregate_mean(
        self, server_round: int, mean: common.NDArrays, num_examples: int,
        metrics: list[tuple[int, common.Metrics]],
    ) -> tuple[common.Parameters | None, dict[str, common.Scalar]]:
        """New global parameters from the example-weighted mean of the clients' models.

        What secure aggregation gives the server instead of the individual results.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not aggregate a weighted sum, so it cannot run with "
            "secure aggregation"
        )

    @property
    def supports_secure_aggregation(self) -> bool:
        """True when :meth:`aggregate_mean` computes what :meth:`aggregate_fit` would."""
        return False

    def state_dict(self) -> dict[str, common.NDArrays]:
        """Server-side optimiser state to checkpoint (momentum, moments)."""
        return {}

    def load_state_dict(self, state: dict[str, common.NDArrays]) -> None:
        """Restore :meth:`state_dict` after a restart."""
        return None
