"""The Message API's server side under Flower's ``flwr.serverapp`` names.

``hfl.serverapp.strategy.FedAvg`` (and FedAvgM, FedProx, FedAdagrad, FedAdam,
FedYogi) with ``configure_train``/``aggregate_train``/``configure_evaluate``/
``aggregate_evaluate`` and ``.start(grid=..., initial_arrays=..., num_rounds=...)``;
``Grid``, :class:`~hfl.server.grid.InMemoryGrid` (ClientApps in this process),
:class:`~hfl.server.grid.PartyGrid` (client parties of a federation), and
``ServerApp`` (``@app.main()`` or a legacy ``server_fn``).
"""

from hfl.server.server_app import ServerApp, ServerAppComponents
from hfl.serverapp import strategy
from hfl.serverapp.grid import Grid, InMemoryGrid, PartyGrid

__all__ = ["Grid", "InMemoryGrid", "PartyGrid", "ServerApp", "ServerAppComponents", "strategy"]
