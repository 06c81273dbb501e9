"""Flower's ``Result``: what ``Strategy.start`` returns."""

from __future__ import annotations

import pprint
from dataclasses import dataclass, field
from typing import Any

from hfl.common.record import ArrayRecord, MetricRecord


@dataclass
class Result:
    """The final global arrays and the metrics of every round."""

    arrays: ArrayRecord = field(default_factory=ArrayRecord)
    train_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_serverapp: dict[int, MetricRecord] = field(default_factory=dict)

    def __repr__(self) -> str:
        arr_size = sum(len(array.data) for array in self.arrays.values()) / (1024**2)
        return (
            "Global Arrays:\n" + f"\tArrayRecord ({arr_size:.3f} MB)\n\n"
            "Aggregated ClientApp-side Train Metrics:\n"
            + pprint.pformat(stringify_dict(self.train_metrics_clientapp), indent=2) + "\n\n"
            "Aggregated ClientApp-side Evaluate Metrics:\n"
            + pprint.pformat(stringify_dict(self.evaluate_metrics_clientapp), indent=2) + "\n\n"
            "ServerApp-side Evaluate Metrics:\n"
            + pprint.pformat(stringify_dict(self.evaluate_metrics_serverapp), indent=2) + "\n"
        )


def format_value(val: Any) -> str:
    """Format a metric value as a string."""
    if isinstance(val, float):
        return f"{val:.4e}"
    if isinstance(val, int):
        return str(val)
    if isinstance(val, list):
        return str([f"{x:.4e}" if isinstance(x, float) else str(x) for x in val])
    return str(val)


def stringify_dict(d: dict[int, MetricRecord]) -> dict[int, dict[str, str]]:
    """Each metric formatted for printing."""
    return {k: {ik: format_value(iv) for ik, iv in inner.items()} for k, inner in d.items()}
