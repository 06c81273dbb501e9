"""Client side under Flower's ``flwr.client`` names.

A Flower client ports by changing imports::

    import hfl as fl                       # was: import flwr as fl

    class FlowerClient(fl.client.NumPyClient):
        def get_parameters(self, config): ...
        def fit(self, parameters, config): ...       # -> (parameters, num_examples, metrics)
        def evaluate(self, parameters, config): ...  # -> (loss, num_examples, metrics)

    fl.client.start_client(server_address="127.0.0.1:8080", client=FlowerClient().to_client(),
                           federation="federation.toml", name="bank_a")

What the server learns from a client: its parameters after local training, its
example count and the metrics it returns; with ``secure_agg`` on, only the sum of
all clients' weighted updates (plus example counts and metrics, which stay in the clear).
"""

from collections.abc import Callable

from hfl.client import app
from hfl.client.app import *  # noqa: F403 - the legacy client API, listed in app.__all__
from hfl.client.app import DEFAULT_IDLE_TIMEOUT_S
from hfl.client.client import Client
from hfl.clientapp import ClientApp
from hfl.common.message import Context

#: Flower's client factory types.
ClientFn = Callable[[str], Client]
ClientFnExt = Callable[[Context], Client]

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "ClientApp", "ClientFn", "ClientFnExt"]
__all__ += app.__all__
