"""Message-API FedAvg (``flwr.serverapp.strategy.FedAvg``): same sampling, checks and numbers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypedDict

from hfl.common.message import Message, MessageType
from hfl.common.record import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from hfl.serverapp.grid import Grid
from hfl.serverapp.strategy.strategy import Strategy
from hfl.serverapp.strategy.strategy_utils import (
    aggregate_arrayrecords,
    aggregate_metricrecords,
    sample_nodes,
    validate_message_reply_consistency,
)

log = logging.getLogger("hfl.serverapp")

MetricsAggrFn = Callable[[list[RecordDict], str], MetricRecord]


class FedAvgOptions(TypedDict, total=False):
    """FedAvg's constructor arguments that FedOpt forwards as ``**kwargs`` (the types only:
    ``hfl._kwargs.extends`` shows FedAvg's defaults in FedOpt's signature)."""

    fraction_train: float
    fraction_evaluate: float
    min_train_nodes: int
    min_evaluate_nodes: int
    min_available_nodes: int
    weighted_by_key: str
    arrayrecord_key: str
    configrecord_key: str
    train_metrics_aggr_fn: MetricsAggrFn | None
    evaluate_metrics_aggr_fn: MetricsAggrFn | None


class FedAvg(Strategy):
    """Federated Averaging over Messages: replies carry ``arrays`` and ``metrics``
    (with ``num-examples``, the weight)."""

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggrFn | None = None,
    ) -> None:
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.train_metrics_aggr_fn = train_metrics_aggr_fn or aggregate_metricrecords
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn or aggregate_metricrecords
        if self.fraction_evaluate == 0.0:
            self.min_evaluate_nodes = 0
        if self.fraction_train == 0.0:
            self.min_train_nodes = 0

    def summary(self) -> None:
        log.info("\t├──> Sampling: fraction_train=%s, fraction_evaluate=%s, min_available_nodes=%d",
                 self.fraction_train, self.fraction_evaluate, self.min_available_nodes)
        log.info("\t└──> Keys: weighted_by_key=%r, arrayrecord_key=%r, configrecord_key=%r",
                 self.weighted_by_key, self.arrayrecord_key, self.configrecord_key)

    def _construct_messages(self, record: RecordDict, node_ids: list[int],
                            message_type: str) -> Iterable[Message]:
        return [Message(content=record, message_type=message_type, dst_node_id=node_id)
                for node_id in node_ids]

    def _configure(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid,
                   fraction: float, min_nodes: int, message_type: str) -> Iterable[Message]:
        """One message for each of ``max(fraction · nodes, min_nodes)`` sampled nodes."""
        if fraction == 0.0:
            return []
        num_nodes = int(len(list(grid.get_node_ids())) * fraction)
        sample_size = max(num_nodes, min_nodes)
        node_ids, _ = sample_nodes(grid, self.min_available_nodes, sample_size)
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, node_ids, message_type)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Configure the next round of federated training."""
        return self._configure(server_round, arrays, config, grid, self.fraction_train,
                               self.min_train_nodes, MessageType.TRAIN)

    def _check_and_log_replies(self, replies: Iterable[Message], is_train: bool,
                               validate: bool = True) -> tuple[list[Message], list[Message]]:
        replies = list(replies)
        if not replies:
            return [], []
        valid_replies = [m for m in replies if not m.has_error()]
        error_replies = [m for m in replies if m.has_error()]
        for msg in error_replies:
            log.info("\t> Received error in reply from node %d: %s",
                     msg.metadata.src_node_id, msg.error.reason)
        if validate and valid_replies:
            validate_message_reply_consistency(
                replies=[msg.content for msg in valid_replies],
                weighted_by_key=self.weighted_by_key, check_arrayrecord=is_train)
        return valid_replies, error_replies

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate ArrayRecords and MetricRecords in the received Messages."""
        valid_replies, _ = self._check_and_log_replies(replies, is_train=True)
        arrays, metrics = None, None
        if valid_replies:
            reply_contents = [msg.content for msg in valid_replies]
            arrays = aggregate_arrayrecords(reply_contents, self.weighted_by_key)
            metrics = self.train_metrics_aggr_fn(reply_contents, self.weighted_by_key)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Configure the next round of federated evaluation."""
        return self._configure(server_round, arrays, config, grid, self.fraction_evaluate,
                               self.min_evaluate_nodes, MessageType.EVALUATE)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Aggregate MetricRecords in the received Messages."""
        valid_replies, _ = self._check_and_log_replies(replies, is_train=False)
        metrics = None
        if valid_replies:
            reply_contents = [msg.content for msg in valid_replies]
            metrics = self.evaluate_metrics_aggr_fn(reply_contents, self.weighted_by_key)
        return metrics
