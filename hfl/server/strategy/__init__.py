"""Aggregation strategies under Flower's ``flwr.server.strategy`` names, one file per rule."""

from hfl.server.strategy.aggregate import weighted_average, weighted_metrics, weighted_sum
from hfl.server.strategy.dp_adaptive_clipping import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
)
from hfl.server.strategy.dp_fixed_clipping import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from hfl.server.strategy.fedadagrad import FedAdagrad
from hfl.server.strategy.fedadam import FedAdam
from hfl.server.strategy.fedavg import SECURE_AGGREGATE_FITS as BUILTIN_AGGREGATE_FIT
from hfl.server.strategy.fedavg import FedAvg
from hfl.server.strategy.fedavgm import FedAvgM
from hfl.server.strategy.fedopt import FedOpt
from hfl.server.strategy.fedprox import FedProx
from hfl.server.strategy.fedyogi import FedYogi
from hfl.server.strategy.strategy import Strategy

__all__ = [
    "BUILTIN_AGGREGATE_FIT",
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
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
