"""gRPC deployment over the federation router with mTLS: the party side of
``hfl.server.start_server`` and ``hfl.client.start_client``.

The server hosts the router in its own process by default (as Flower's server
listens on ``server_address``), then dials it like any party. Every party is
identified by its certificate; the federation TOML names the CA, the router
address and each party's certificate and key (``python -m party.certs`` makes them).

This module knows parties and federation files, not HFL roles: the start functions
(in ``hfl.server`` and ``hfl.client``) pass in what to run once connected, so it
imports neither of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from party import ConfigError, Party, PartyUnavailable, Role
from party.config import FederationConfig, load_federation

log = logging.getLogger("hfl.deploy")


def _load(federation: str | Path | None) -> FederationConfig:
    path = federation or os.environ.get("TESSERA_FEDERATION")
    if not path:
        raise ConfigError(
            "no federation config: pass federation='federation.toml' or set $TESSERA_FEDERATION "
            "(tessera always runs gRPC with mutual TLS; `python -m party.certs` makes certificates)"
        )
    return load_federation(path)


def _server_name(cfg: FederationConfig, name: str | None) -> str:
    if name:
        cfg.party(name)
        return name
    servers = cfg.names(Role.SERVER)
    if len(servers) != 1:
        raise ConfigError(
            f"{cfg.source}: need exactly one party with role = \"server\", found {servers}; "
            "pass name=/server_name="
        )
    return servers[0]


def _client_name(cfg: FederationConfig, name: str | None) -> str:
    name = name or os.environ.get("TESSERA_PARTY")
    if name:
        if cfg.party(name).role != Role.CLIENT:
            raise ConfigError(f"{cfg.source}: party {name!r} has role {cfg.party(name).role.value}, "
                              "not client")
        return name
    mine = [n for n in cfg.names(Role.CLIENT) if cfg.party(n).key.is_file()]
    if len(mine) != 1:
        raise ConfigError(
            f"{cfg.source}: cannot tell which client this is ({len(mine)} client keys readable "
            "here); pass name= or set $TESSERA_PARTY"
        )
    return mine[0]


@contextmanager
def server_party(
    *, server_address: str | None, federation: str | Path | None, name: str | None,
    host_router: bool,
) -> Iterator[tuple[Party, list[str]]]:
    """The server's connected party and the federation's client names; hosts the router
    (``host_router``) for as long as the block runs."""
    from party.grpc_transport import connect
    from party.router import Router

    cfg = _load(federation)
    me = _server_name(cfg, name)
    router = None
    if host_router:
        router = Router(cfg, listen=server_address or cfg.listen).start()
        dial = dataclasses.replace(cfg, router=f"127.0.0.1:{router.port}")
        print(f"hfl server {me!r}: router for {cfg.name!r} listening on port {router.port}",
              flush=True)
    else:
        dial = dataclasses.replace(cfg, router=server_address) if server_address else cfg
    try:
        party = connect(dial, me)
        try:
            yield party, cfg.names(Role.CLIENT)
        finally:
            party.close()
    finally:
        if router is not None:
            router.stop()


def client_party_loop(
    *, server_address: str | None, federation: str | Path | None, name: str | None,
    server_name: str | None, max_retries: int | None, max_wait_time: float | None,
    insecure: bool, serve: Callable[[Party, str], str],
) -> str:
    """Connect, ``serve(party, server)``, reconnect after a loss, until it returns
    ``"shutdown"`` (which is returned)."""
    from party.grpc_transport import connect

    if insecure:
        raise ConfigError("insecure=True is not supported: tessera always uses mutual TLS")
    cfg = _load(federation)
    me = _client_name(cfg, name)
    server = _server_name(cfg, server_name)
    if server_address:
        cfg = dataclasses.replace(cfg, router=server_address)
    attempts = 0
    since = time.monotonic()
    while True:
        try:
            party = connect(cfg, me, connect_timeout_s=10.0)
        except PartyUnavailable as e:
            attempts += 1
            waited = time.monotonic() - since
            if (max_retries is not None and attempts > max_retries) or (
                    max_wait_time is not None and waited > max_wait_time):
                raise PartyUnavailable(
                    "router", f"{me}: no connection to {cfg.router} after {attempts} attempts "
                    f"over {waited:.0f} s ({e.reason})") from None
            time.sleep(1.0)
            continue
        try:
            online = getattr(party.transport, "online", [server])
            if server not in online:
                log.info("%s: server %s not connected yet; retrying", me, server)
                why = f"server gone: {server} not online"
            else:
                why = serve(party, server)
        finally:
            party.close()
        if why == "shutdown":
            return why
        log.warning("%s: %s; reconnecting", me, why)
        attempts += 1
        if max_retries is not None and attempts > max_retries:
            raise PartyUnavailable(server, f"{me}: gave up after {attempts} attempts ({why})")
        if time.monotonic() - since > (max_wait_time or float("inf")) and "not online" in why:
            raise PartyUnavailable(server, f"{me}: {server} did not come online ({why})")
        if "not online" not in why:
            since = time.monotonic()
        time.sleep(1.0)
