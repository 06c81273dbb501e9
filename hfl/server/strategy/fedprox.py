"""FedProx (Li et al., 2020): FedAvg aggregation; clients add (μ/2)·‖w − w_global‖².

Flower's ``flwr.server.strategy.FedProx``: ``proximal_mu`` is required and goes to
every client in its fit config; the proximal term is the client's business (it owns
the training loop): add ``hfl.torch_utils.proximal_term(model, global_params, mu)``
to the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hfl._kwargs import parent_kwargs
from hfl.common.typing import FitIns, MetricsAggregationFn, Parameters, Scalar
from hfl.server.strategy.fedavg import EvaluateFn, FedAvg

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy


class FedProx(FedAvg):
    """Federated Optimization strategy with a proximal term (Flower's arguments)."""

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
        proximal_mu: float,
    ) -> None:
        if proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
        super().__init__(**parent_kwargs(FedAvg.__init__, locals()))
        self.proximal_mu = proximal_mu

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        """Send the proximal factor mu to the clients along with the fit config."""
        client_config_pairs = super().configure_fit(server_round, parameters, client_manager)
        return [(client, FitIns(fit_ins.parameters, {**fit_ins.config, "proximal_mu": self.proximal_mu}))
                for client, fit_ins in client_config_pairs]
