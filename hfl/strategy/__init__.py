"""``hfl.strategy``: the same objects as :mod:`hfl.server.strategy` (tessera's shorter path)."""

from hfl.server.strategy import (
    BUILTIN_AGGREGATE_FIT,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedOpt,
    FedProx,
    FedYogi,
    Strategy,
    weighted_average,
    weighted_metrics,
    weighted_sum,
)

__all__ = [
    "BUILTIN_AGGREGATE_FIT",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedOpt",
    "FedProx",
    "FedYogi",
    "Strategy",
    "weighted_average",
    "weighted_metrics",
    "weighted_sum",
]
