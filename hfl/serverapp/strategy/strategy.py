"""Flower's Message-API ``Strategy`` (``flwr.serverapp.strategy.Strategy``) and ``start``.

``start(grid=..., initial_arrays=..., num_rounds=...)`` runs Flower's loop: each
round ``configure_train`` -> ``grid.send_and_receive`` -> ``aggregate_train``, then
``configure_evaluate`` -> ``aggregate_evaluate``, then the optional server-side
``evaluate_fn``; it returns a :class:`Result`.
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from hfl.common.message import Message
from hfl.common.record import ArrayRecord, ConfigRecord, MetricRecord
from hfl.serverapp.grid import Grid
from hfl.serverapp.strategy.result import Result
from hfl.serverapp.strategy.strategy_utils import log_strategy_start_info

log = logging.getLogger("hfl.serverapp")


class Strategy(ABC):
    """Abstract base class for server strategy implementations."""

    @abstractmethod
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Configure the next round of training."""

    @abstractmethod
    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate training results from client nodes."""

    @abstractmethod
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Configure the next round of evaluation."""

    @abstractmethod
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Aggregate evaluation metrics from client nodes."""

    @abstractmethod
    def summary(self) -> None:
        """Log a summary of the strategy configuration."""

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Execute the federated learning strategy for ``num_rounds`` over ``grid``."""
        log_strategy_start_info(num_rounds, initial_arrays, train_config, evaluate_config)
        self.summary()
        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        result = Result()
        t_start = time.time()
        if evaluate_fn:
            res = evaluate_fn(0, initial_arrays)
            if res is not None:
                result.evaluate_metrics_serverapp[0] = res
        arrays = initial_arrays
        for current_round in range(1, num_rounds + 1):
            log.info("[ROUND %s/%s]", current_round, num_rounds)
            train_replies = grid.send_and_receive(
                messages=self.configure_train(current_round, arrays, train_config, grid), timeout=timeout)
            agg_arrays, agg_train_metrics = self.aggregate_train(current_round, train_replies)
            if agg_arrays is not None:
                result.arrays = agg_arrays
                arrays = agg_arrays
            if agg_train_metrics is not None:
                result.train_metrics_clientapp[current_round] = agg_train_metrics
            evaluate_replies = grid.send_and_receive(
                messages=self.configure_evaluate(current_round, arrays, evaluate_config, grid),
                timeout=timeout)
            agg_evaluate_metrics = self.aggregate_evaluate(current_round, evaluate_replies)
            if agg_evaluate_metrics is not None:
                result.evaluate_metrics_clientapp[current_round] = agg_evaluate_metrics
            if evaluate_fn:
                res = evaluate_fn(current_round, arrays)
                if res is not None:
                    result.evaluate_metrics_serverapp[current_round] = res
        log.info("Strategy execution finished in %.2fs", time.time() - t_start)
        for line in io.StringIO(str(result)):
            log.info("\t%s", line.strip("\n"))
        return result
