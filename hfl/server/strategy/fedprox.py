"""FedProx (Li et al., 2020): FedAvg aggregation; clients add (μ/2)·‖w − w_global‖².

Flower's ``flwr.server.strategy.FedProx``: ``proximal_mu`` is required and goes to
every client in its fit config; the proximal term is the client's business (it owns
the training loop): add ``hfl.torch_utils.proximal_term(model, global_params, mu)``
to the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from hfl._kwargs import extends
from hfl.common.typing import FitIns, Parameters
from hfl.server.strategy.fedavg import FedAvg, FedAvgOptions

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy


class FedProx(FedAvg):
    """Federated Optimization strategy with a proximal term (Flower's arguments)."""

    @extends(FedAvg.__init__, without=("inplace",))
    def __init__(self, *, proximal_mu: float, **kwargs: Unpack[FedAvgOptions]) -> None:
        if proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
        super().__init__(**kwargs)
        self.proximal_mu = proximal_mu

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        """Send the proximal factor mu to the clients along with the fit config."""
        client_config_pairs = super().configure_fit(server_round, parameters, client_manager)
        return [(client, FitIns(fit_ins.parameters, {**fit_ins.config, "proximal_mu": self.proximal_mu}))
                for client, fit_ins in client_config_pairs]
