"""The Message API's server side under Flower's ``flwr.serverapp`` names.

``hfl.serverapp.strategy.FedAvg`` (and FedAvgM, FedProx, FedAdagrad, FedAdam,
FedYogi) with ``configure_train``/``aggregate_train``/``configure_evaluate``/
``aggregate_evaluate`` and ``.start(grid=..., initial_arrays=..., num_rounds=...)``;
``Grid`` and :class:`~hfl.serverapp.grid.InMemoryGrid` (ClientApps in this process).
"""

from hfl.serverapp import strategy
from hfl.serverapp.grid import Grid, InMemoryGrid

__all__ = ["Grid", "InMemoryGrid", "strategy"]
