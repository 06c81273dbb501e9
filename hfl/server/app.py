"""``start_server``: the HFL server as a process over gRPC with mutual TLS (Flower's ``flwr.server.start_server``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfl.common import refuse_flower_kwargs
from hfl.deploy import server_party
from hfl.history import History
from hfl.server.client_manager import ClientManager
from hfl.server.server import Server
from hfl.server.server_config import ServerConfig
from hfl.server.strategy import Strategy
from party import ConfigError


def start_server(
    *,
    server_address: str | None = None,
    server: Server | None = None,
    config: ServerConfig | None = None,
    strategy: Strategy | None = None,
    client_manager: ClientManager | None = None,
    federation: str | Path | None = None,
    name: str | None = None,
    secure_agg: bool | Mapping[str, Any] = False,
    checkpoint_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    host_router: bool = True,
    seed: int = 0,
    progress: bool = True,
    wait_for_clients_s: float = 300.0,
    min_clients_at_start: int = 0,
    certificates: Any = None,
    **_flower_kwargs: Any,
) -> History:
    """Run the server over gRPC with mutual TLS (Flower's ``start_server``, plus ours).

    Args:
        server_address: where the router listens (``host:port``); overrides
            ``[federation].listen``. With ``host_router=False`` the router named in
            the federation file must already run (``python -m party.router``).
        config: rounds and per-round timeout.
        strategy: aggregation rule (default FedAvg).
        server, client_manager, certificates: Flower's arguments; refused (tessera
            builds the server over the federation's party, and the federation file
            names the certificates).
        federation: the federation TOML (CA, router and party certificates); defaults
            to ``$TESSERA_FEDERATION``.
        name: this server's party name (default: the ``role = "server"`` party).
        secure_agg, checkpoint_dir, output_dir, seed, progress, wait_for_clients_s,
        min_clients_at_start: as for :class:`Server`.

    Returns:
        The training :class:`History` (``history.parameters`` is the final model).
    """
    refuse_flower_kwargs("start_server", _flower_kwargs)
    for nm, v in (("server", server), ("client_manager", client_manager), ("certificates", certificates)):
        if v is not None:
            raise ConfigError(
                f"start_server({nm}=...) is not supported: tessera builds its Server over the "
                "federation's party with mutual TLS; name the certificates in the federation file "
                "and pass strategy=/config= instead")
    config = config or ServerConfig()
    with server_party(server_address=server_address, federation=federation, name=name,
                      host_router=host_router) as (party, clients):
        srv = Server(party, strategy, clients=clients, secure_agg=secure_agg,
                     checkpoint_dir=checkpoint_dir, output_dir=output_dir, seed=seed,
                     progress=progress, wait_for_clients_s=wait_for_clients_s,
                     min_clients_at_start=min_clients_at_start)
        history = srv.fit(config.num_rounds, config.round_timeout)
        srv.shutdown()
        time.sleep(0.5)  # let the router deliver the Shutdowns before it stops
        return history


__all__ = ["start_server"]
