"""Aggregation strategies: one :class:`Strategy` interface, one file per rule."""

from hfl.strategy.aggregate import weighted_average, weighted_metrics, weighted_sum
from hfl.strategy.base import Strategy
from hfl.strategy.fedavg import FedAvg
from hfl.strategy.fedavgm import FedAvgM
from hfl.strategy.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from hfl.strategy.fedprox import FedProx

__all__ = [
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
