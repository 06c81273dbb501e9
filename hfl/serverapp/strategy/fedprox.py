"""Message-API FedProx (``flwr.serverapp.strategy.FedProx``): FedAvg that sends ``proximal-mu``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hfl._kwargs import parent_kwargs
from hfl.common.message import Message
from hfl.common.record import ArrayRecord, ConfigRecord
from hfl.serverapp.grid import Grid
from hfl.serverapp.strategy.fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg whose train config carries ``proximal-mu`` (the ClientApp adds the proximal term)."""

    def __init__(self, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2, min_available_nodes: int = 2,
                 weighted_by_key: str = "num-examples", arrayrecord_key: str = "arrays",
                 configrecord_key: str = "config", train_metrics_aggr_fn: Any = None,
                 evaluate_metrics_aggr_fn: Any = None, proximal_mu: float = 0.0) -> None:
        super().__init__(**parent_kwargs(FedAvg.__init__, locals()))
        if proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
        self.proximal_mu = proximal_mu

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        config["proximal-mu"] = self.proximal_mu
        return super().configure_train(server_round, arrays, config, grid)
