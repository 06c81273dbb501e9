"""The HFL server under Flower's ``flwr.server`` names.

``Server``, ``ServerConfig``, ``start_server``, ``History``, ``ClientManager``,
``SimpleClientManager``, ``strategy`` (``fl.server.strategy.FedAvg``) and the
module paths Flower's code imports (``hfl.server.server``, ``.history``,
``.client_proxy``, ``.client_manager``, ``.criterion``, ``.strategy.*``).
"""

from hfl.server import strategy as strategy
from hfl.server.app import start_server
from hfl.server.client_manager import ClientManager, SimpleClientManager
from hfl.server.client_proxy import ClientProxy
from hfl.server.criterion import Criterion
from hfl.server.grid import Grid, InMemoryGrid, PartyGrid
from hfl.server.history import History
from hfl.server.server import (
    ClientFailure,
    NotEnoughClients,
    PartyClientManager,
    PartyClientProxy,
    Server,
    ServerConfig,
    evaluate_clients,
    fit_clients,
)
from hfl.server.server_app import ServerApp, ServerAppComponents
from party import ClosedTransport

Driver = Grid  #: Flower's deprecated name of Grid

__all__ = [
    "ClientFailure",
    "ClientManager",
    "ClientProxy",
    "ClosedTransport",
    "Criterion",
    "Driver",
    "Grid",
    "History",
    "InMemoryGrid",
    "NotEnoughClients",
    "PartyClientManager",
    "PartyClientProxy",
    "PartyGrid",
    "Server",
    "ServerApp",
    "ServerAppComponents",
    "ServerConfig",
    "SimpleClientManager",
    "evaluate_clients",
    "fit_clients",
    "start_server",
    "strategy",
]
