"""Helpers of the Message-API strategies (Flower's ``strategy_utils``, same arithmetic)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from hfl.common.typing import NDArray
from hfl.serverapp.exception import InconsistentMessageReplies
from hfl.serverapp.grid import Grid

log = logging.getLogger("hfl.serverapp")


def config_to_str(config: ConfigRecord) -> str:
    """Convert a ConfigRecord to a string, masking ``bytes`` values."""
    content = ", ".join(f"'{k}': {'<bytes>' if isinstance(v, bytes) else v}" for k, v in config.items())
    return f"{{{content}}}"


def log_strategy_start_info(num_rounds: int, arrays: ArrayRecord, train_config: ConfigRecord | None,
                            evaluate_config: ConfigRecord | None) -> None:
    """Log what the strategy starts with."""
    log.info("\t├── Number of rounds: %d", num_rounds)
    log.info("\t├── ArrayRecord (%.2f MB)", sum(len(a.data) for a in arrays.values()) / (1024**2))
    log.info("\t├── ConfigRecord (train): %s", config_to_str(train_config) if train_config else "(empty!)")
    log.info("\t├── ConfigRecord (evaluate): %s",
             config_to_str(evaluate_config) if evaluate_config else "(empty!)")


def _weight_factors(records: list[RecordDict], weighting_metric_name: str) -> list[float]:
    weights: list[float] = []
    for record in records:
        metricrecord = next(iter(record.metric_records.values()))
        weights.append(cast(float, metricrecord[weighting_metric_name]))
    total_weight = sum(weights)
    return [w / total_weight for w in weights]


def aggregate_arrayrecords(records: list[RecordDict], weighting_metric_name: str) -> ArrayRecord:
    """Weighted average of the ArrayRecords (weights: each reply's ``weighting_metric_name``)."""
    aggregated_np_arrays: dict[str, NDArray] = {}
    for record, weight in zip(records, _weight_factors(records, weighting_metric_name), strict=True):
        for record_item in record.array_records.values():
            for key, value in record_item.items():
                if key not in aggregated_np_arrays:
                    aggregated_np_arrays[key] = value.numpy() * weight
                else:
                    aggregated_np_arrays[key] += value.numpy() * weight
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in aggregated_np_arrays.items()})


def aggregate_metricrecords(records: list[RecordDict], weighting_metric_name: str) -> MetricRecord:
    """Weighted average of the MetricRecords (the weighting metric itself is left out)."""
    aggregated_metrics = MetricRecord()
    for record, weight in zip(records, _weight_factors(records, weighting_metric_name), strict=True):
        for record_item in record.metric_records.values():
            for key, value in record_item.items():
                if key == weighting_metric_name:
                    continue
                if key not in aggregated_metrics:
                    if isinstance(value, list):
                        aggregated_metrics[key] = [v * weight for v in value]
                    else:
                        aggregated_metrics[key] = value * weight
                elif isinstance(value, list):
                    current_list = cast(list[float], aggregated_metrics[key])
                    aggregated_metrics[key] = [curr + val * weight
                                               for curr, val in zip(current_list, value, strict=True)]
                else:
                    aggregated_metrics[key] = cast(float, aggregated_metrics[key]) + value * weight
    return aggregated_metrics


def sample_nodes(grid: Grid, min_available_nodes: int, sample_size: int) -> tuple[list[int], list[int]]:
    """Wait for ``max(min_available_nodes, sample_size)`` nodes, then sample ``sample_size``."""
    min_available_nodes = max(min_available_nodes, sample_size)
    while len(all_nodes := list(grid.get_node_ids())) < min_available_nodes:
        log.info("Waiting for nodes to connect: %d connected (minimum required: %d).",
                 len(all_nodes), min_available_nodes)
        time.sleep(1)
    return random.sample(all_nodes, sample_size), all_nodes


def _single_record_keys(replies: list[RecordDict], records: Callable[[RecordDict], Mapping[str, Any]],
                        kind: str, not_one: str) -> tuple[str, set[str]]:
    """The key of the one ``kind`` record in each reply, and its keys, the same in every reply."""
    if any(len(records(msg)) != 1 for msg in replies):
        raise InconsistentMessageReplies(reason=not_one)
    record_key = next(iter(records(replies[0]).keys()))
    all_keys = set(replies[0][record_key].keys())
    if any(set(msg.get(record_key, {}).keys()) != all_keys for msg in replies[1:]):
        raise InconsistentMessageReplies(
            reason=f"All {kind}s must have the same keys for aggregation. This condition "
                   "wasn't met. Skipping aggregation.")
    return record_key, all_keys


def validate_message_reply_consistency(replies: list[RecordDict], weighted_by_key: str,
                                       check_arrayrecord: bool) -> None:
    """Raise InconsistentMessageReplies unless the replies can be aggregated together."""
    if check_arrayrecord:
        _single_record_keys(replies, lambda msg: msg.array_records, "ArrayRecord",
                            "Expected exactly one ArrayRecord in replies. Skipping aggregation.")
    record_key, all_keys = _single_record_keys(
        replies, lambda msg: msg.metric_records, "MetricRecord",
        "Expected exactly one MetricRecord in replies, but found more. Skipping aggregation.")
    if weighted_by_key not in all_keys:
        raise InconsistentMessageReplies(
            reason=f"Missing required key `{weighted_by_key}` in the MetricRecord of reply messages. "
                   "Cannot average ArrayRecords and MetricRecords. Skipping aggregation.")
    if any(isinstance(msg[record_key][weighted_by_key], list) for msg in replies):
        raise InconsistentMessageReplies(
            reason=f"Key `{weighted_by_key}` in the MetricRecord of reply messages must be a single "
                   "value (int or float), but a list was found. Skipping aggregation.")
