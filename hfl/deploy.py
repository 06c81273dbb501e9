"""gRPC deployment over the federation router with mTLS: the party side of
``hfl.server.start_server`` and ``hfl.client.start_client``.

The server hosts the router in its own process by default (as Flower's server
listens on ``server_address``), then dials it like any party. Every party is
identified by its certificate. Where the certificates come from, in order:

1. a **join token** (``join_token=`` or ``$TESSERA_JOIN_TOKEN``, clients only): the
   client enrolls at the server's enrollment endpoint (its port + 1, or
   ``$TESSERA_ENROLL_ADDRESS``), keeps the certificate under its state directory and
   reuses it when restarted with the same token (:mod:`party.enroll`);
2. a **federation file** (``federation=`` or ``$TESSERA_FEDERATION``) naming the CA,
   the router address and each party's certificate and key (``python -m party.certs``);
3. otherwise **development mode** (:mod:`party.devfed`): a per-user local federation,
   made by whichever side starts first; the server says so once on start, a client
   takes a free name ``client_N``. It trusts the local user account and is still
   mutual TLS. A dev server also serves join-token enrollment on its port + 1, and
   prints tokens for the names in ``$TESSERA_JOIN_TOKENS`` (comma-separated).

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


def _load(federation: str | Path | None) -> FederationConfig | None:
    """The federation file's config, or None for development mode."""
    path = federation or os.environ.get("TESSERA_FEDERATION")
    return load_federation(path) if path else None


_noticed = False


def _dev_notice(cfg: FederationConfig, address: str) -> None:
    global _noticed
    if not _noticed:
        from party.devfed import notice

        _noticed = True
        msg = notice(cfg.tls.ca.parent, address)
        print(f"hfl server: {msg}", flush=True)


def _print_tokens(cfg: FederationConfig, me: str) -> None:
    names = [n.strip() for n in os.environ.get("TESSERA_JOIN_TOKENS", "").split(",") if n.strip()]
    if not names:
        return
    from party.enroll import TokenStore

    store = TokenStore(cfg.tls.ca.parent)
    for n in names:
        tok = store.issue(n, 3600.0, allowed=cfg.names(Role.CLIENT))
        print(f"hfl server {me!r}: join token for {n!r} (1 h, single use): {tok}", flush=True)



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

    file_cfg = _load(federation)
    dev = file_cfg is None
    if file_cfg is None:
        from party.devfed import ensure_dev_federation

        cfg = ensure_dev_federation()
        server_address = server_address or "0.0.0.0:8080"
    else:
        cfg = file_cfg
    me = _server_name(cfg, name)
    router = None
    enrollment = None
    try:
        if host_router:
            listen = server_address or cfg.listen
            router = Router(cfg, listen=listen).start()
            dial = dataclasses.replace(cfg, router=f"127.0.0.1:{router.port}")
            if dev:
                _dev_notice(cfg, listen)
                if router.enrollment is None:
                    from party.enroll import EnrollmentServer

                    host = listen.rpartition(":")[0]
                    try:  # join tokens for other machines; the federation works without it
                        enrollment = EnrollmentServer(cfg, f"{host}:{(router.port or 0) + 1}").start()
                    except ConfigError as e:
                        log.warning("no join-token enrollment: %s", e)
            print(f"hfl server {me!r}: router for {cfg.name!r} listening on port {router.port}",
                  flush=True)
            _print_tokens(cfg, me)
        else:
            dial = dataclasses.replace(cfg, router=server_address) if server_address else cfg
        party = connect(dial, me)
        try:
            yield party, cfg.names(Role.CLIENT)
        finally:
            party.close()
    finally:
        if enrollment is not None:
            enrollment.stop()
        if router is not None:
            router.stop()


def _joined_federation(token: str, server_address: str | None, name: str | None,
                       max_wait_time: float | None) -> tuple[FederationConfig, str]:
    """Enroll with a join token (or reuse what an earlier run with it enrolled)."""
    from party.devfed import private_dir, state_dir
    from party.enroll import enroll_address, join, parse_token, save_enrolled

    tok = parse_token(token)
    if not server_address:
        raise ConfigError("a join token needs server_address= (the server's host:port)")
    base = private_dir(state_dir())
    joined = private_dir(base / "joined")
    saved = joined / tok.id
    if (saved / "party").is_file() and (saved / "federation.toml").is_file():
        cfg = load_federation(saved / "federation.toml")
        me = (saved / "party").read_text().strip()
        log.info("reusing the certificate enrolled with token %s for %r", tok.id, me)
        return cfg, me
    address = enroll_address(server_address)
    since = time.monotonic()
    while True:
        try:
            enrolled = join(address, token, name=name)
            break
        except PartyUnavailable as e:
            if time.monotonic() - since > (max_wait_time or 60.0):
                raise PartyUnavailable("router", f"cannot enroll at {address}: {e.reason}") from None
            time.sleep(1.0)
    path = save_enrolled(enrolled, saved, router=server_address)
    print(f"hfl client: joined {enrolled.federation.get('name')!r} as {enrolled.party!r} "
          f"(certificate in {path.parent})", flush=True)
    return load_federation(path), enrolled.party


def client_party_loop(
    *, server_address: str | None, federation: str | Path | None, name: str | None,
    server_name: str | None, max_retries: int | None, max_wait_time: float | None,
    insecure: bool, serve: Callable[[Party, str], str], join_token: str | None = None,
) -> str:
    """Connect, ``serve(party, server)``, reconnect after a loss, until it returns
    ``"shutdown"`` (which is returned)."""
    from party.grpc_transport import connect

    if insecure:
        raise ConfigError("insecure=True is not supported: tessera always uses mutual TLS")
    token = join_token or os.environ.get("TESSERA_JOIN_TOKEN")
    file_cfg = None if token else _load(federation)
    if token:
        cfg, me = _joined_federation(token, server_address, name or os.environ.get("TESSERA_PARTY"),
                                     max_wait_time)
    elif file_cfg is None:
        from party.devfed import claim_client, ensure_dev_federation

        cfg = ensure_dev_federation()
        me = claim_client(cfg, name or os.environ.get("TESSERA_PARTY"))
        server_address = server_address or "127.0.0.1:8080"
        print(f"hfl client: development mode, party {me!r} of {cfg.name!r}", flush=True)
    else:
        cfg = file_cfg
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
