"""FedProx (Li et al., 2020): FedAvg aggregation; clients add (μ/2)·‖w − w_global‖²."""

from __future__ import annotations

from typing import Any

import numpy as np

from hfl.common import Config, NDArrays
from hfl.strategy.fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg that sends ``proximal_mu`` to every client in its fit config.

    The proximal term is the client's business (it owns the training loop):
    add ``hfl.torch_utils.proximal_term(model, global_params, mu)`` to the loss.
    """

    def __init__(self, *, proximal_mu: float, **kwargs: Any) -> None:
        if proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
        super().__init__(**kwargs)
        self.proximal_mu = float(proximal_mu)

    def configure_fit(
        self, server_round: int, parameters: NDArrays, clients: list[str], rng: np.random.Generator
    ) -> list[tuple[str, Config]]:
        out = super().configure_fit(server_round, parameters, clients, rng)
        for _, cfg in out:
            cfg["proximal_mu"] = self.proximal_mu
        return out
