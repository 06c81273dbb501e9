"""The one Strategy interface every aggregation rule implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from hfl.common import Config, Metrics, NDArrays
from hfl.messages import EvaluateRes, FitRes

FitResults = list[tuple[str, FitRes]]
EvaluateResults = list[tuple[str, EvaluateRes]]
Failures = list[tuple[str, str]]  # (client, why)


class Strategy(ABC):
    """How a server samples clients, configures them and aggregates their results.

    The server calls, each round: :meth:`configure_fit`, then :meth:`aggregate_fit`
    (or :meth:`aggregate_mean` when secure aggregation produced the weighted mean),
    then :meth:`evaluate` (central) and :meth:`configure_evaluate` /
    :meth:`aggregate_evaluate` (federated). Results arrive sorted by client name,
    so aggregation is deterministic whatever order replies came in.
    """

    def initialize_parameters(self) -> NDArrays | None:
        """Initial global model, or None to ask one client for its parameters."""
        return None

    def num_available_required(self) -> int:
        """How many clients must be connected before a round starts."""
        return 1

    @abstractmethod
    def configure_fit(
        self, server_round: int, parameters: NDArrays, clients: list[str], rng: np.random.Generator
    ) -> list[tuple[str, Config]]:
        """Pick this round's training clients (from ``clients``) and their configs."""

    @abstractmethod
    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: Failures
    ) -> tuple[NDArrays | None, Metrics]:
        """New global parameters from the clients' results (None: keep the model)."""

    def aggregate_mean(
        self, server_round: int, mean: NDArrays, num_examples: int, metrics: list[tuple[int, Metrics]]
    ) -> tuple[NDArrays | None, Metrics]:
        """New global parameters from the example-weighted mean of the clients' models.

        Implemented by every strategy whose aggregate is a weighted sum; that is
        what makes it usable with ``secure_agg``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not aggregate a weighted sum, so it cannot run with "
            "secure aggregation"
        )

    @property
    def supports_secure_aggregation(self) -> bool:
        return type(self).aggregate_mean is not Strategy.aggregate_mean

    def configure_evaluate(
        self, server_round: int, parameters: NDArrays, clients: list[str], rng: np.random.Generator
    ) -> list[tuple[str, Config]]:
        """Pick this round's evaluation clients; none by default."""
        return []

    def aggregate_evaluate(
        self, server_round: int, results: EvaluateResults, failures: Failures
    ) -> tuple[float | None, Metrics]:
        """Aggregate federated evaluation results."""
        return None, {}

    def evaluate(self, server_round: int, parameters: NDArrays) -> tuple[float, Metrics] | None:
        """Central evaluation on the server's own data; None when there is none."""
        return None

    def state_dict(self) -> dict[str, NDArrays]:
        """Server-side optimiser state to checkpoint (momentum, moments)."""
        return {}

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        """Restore :meth:`state_dict` after a restart."""
        return None
