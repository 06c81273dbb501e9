"""Message-API strategies (Flower's ``flwr.serverapp.strategy``)."""

from hfl.serverapp.strategy.fedadagrad import FedAdagrad
from hfl.serverapp.strategy.fedadam import FedAdam
from hfl.serverapp.strategy.fedavg import FedAvg
from hfl.serverapp.strategy.fedavgm import FedAvgM
from hfl.serverapp.strategy.fedopt import FedOpt
from hfl.serverapp.strategy.fedprox import FedProx
from hfl.serverapp.strategy.fedyogi import FedYogi
from hfl.serverapp.strategy.result import Result
from hfl.serverapp.strategy.strategy import Strategy

__all__ = ["FedAdagrad", "FedAdam", "FedAvg", "FedAvgM", "FedOpt", "FedProx", "FedYogi", "Result", "Strategy"]
