"""``hfl.strategy.aggregate``: the same functions as :mod:`hfl.server.strategy.aggregate`."""

from hfl.server.strategy.aggregate import (
    aggregate,
    aggregate_inplace,
    aggregate_median,
    aggregate_trimmed_avg,
    cast_like,
    flatten,
    unflatten,
    weighted_average,
    weighted_loss_avg,
    weighted_metrics,
    weighted_sum,
)

__all__ = [
    "aggregate",
    "aggregate_inplace",
    "aggregate_median",
    "aggregate_trimmed_avg",
    "cast_like",
    "flatten",
    "unflatten",
    "weighted_average",
    "weighted_loss_avg",
    "weighted_metrics",
    "weighted_sum",
]
