"""Message-API FedAvgM (``flwr.serverapp.strategy.FedAvgM``): server momentum, Flower's numbers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from hfl._kwargs import parent_kwargs
from hfl.common.message import Message
from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord
from hfl.common.typing import NDArrays
from hfl.serverapp.exception import AggregationError
from hfl.serverapp.grid import Grid
from hfl.serverapp.strategy.fedavg import FedAvg

log = logging.getLogger("hfl.serverapp")


class FedAvgM(FedAvg):
    """FedAvg with server learning rate and server momentum."""

    def __init__(self, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2, min_available_nodes: int = 2,
                 weighted_by_key: str = "num-examples", arrayrecord_key: str = "arrays",
                 configrecord_key: str = "config", train_metrics_aggr_fn: Any = None,
                 evaluate_metrics_aggr_fn: Any = None, server_learning_rate: float = 1.0,
                 server_momentum: float = 0.0) -> None:
        super().__init__(**parent_kwargs(FedAvg.__init__, locals()))
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.server_opt: bool = (self.server_momentum != 0.0) or (self.server_learning_rate != 1.0)
        self.current_arrays: ArrayRecord | None = None
        self.momentum_vector: NDArrays | None = None

    def summary(self) -> None:
        log.info("\t├──> FedAvgM: server optimisation %s (lr=%s, momentum=%s)",
                 "ON" if self.server_opt else "OFF", self.server_learning_rate, self.server_momentum)
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if self.current_arrays is None:
            self.current_arrays = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        aggregated_arrays, aggregated_metrics = super().aggregate_train(server_round, replies)
        if self.server_opt and aggregated_arrays is not None:
            if self.current_arrays is None:
                raise AggregationError(
                    "No initial parameters set for FedAvgM. Ensure that `configure_train` has been "
                    "called before aggregation.")
            ndarrays = self.current_arrays.to_numpy_ndarrays()
            aggregated_ndarrays = aggregated_arrays.to_numpy_ndarrays()
            array_keys = list(aggregated_arrays.keys())
            aggregated_arrays.clear()
            pseudo_gradient = [old - new for new, old in zip(aggregated_ndarrays, ndarrays, strict=True)]
            if self.server_momentum > 0.0:
                if self.momentum_vector is None:
                    self.momentum_vector = pseudo_gradient
                else:
                    self.momentum_vector = [self.server_momentum * mv + pg
                                            for mv, pg in zip(self.momentum_vector, pseudo_gradient, strict=True)]
                pseudo_gradient = self.momentum_vector
            updated = [Array(np.asarray(old - self.server_learning_rate * pg))
                       for old, pg in zip(ndarrays, pseudo_gradient, strict=True)]
            aggregated_arrays = ArrayRecord(dict(zip(array_keys, updated, strict=True)))
            self.current_arrays = aggregated_arrays
        return aggregated_arrays, aggregated_metrics
