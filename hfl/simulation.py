"""Simulation: many virtual clients, in this process or on a Ray cluster.

The server and the strategy are exactly those of a gRPC deployment; only the
transport differs (and the in-memory transport still carries codec-encoded
bytes). Two backends:

- ``backend="inprocess"`` (the default; tests and CI need nothing more): every
  virtual client is a light thread waiting on its mailbox; the user's ``client_fn``
  and its training run on a pool of ``num_workers`` threads (torch releases the GIL
  in its kernels), built lazily per instruction as in Flower.
- ``backend="ray"`` (``pip install 'tessera[ray]'``): each client is built on demand
  from ``client_fn(context)`` inside a pool of Ray actors sized by
  ``client_resources`` (Flower's names), on this machine or a cluster
  (``ray_init_args={"address": "auto"}``); see :mod:`hfl.ray`.

``context.state`` (a dict, Flower's ``Context.state``) survives between a client's
rounds in both backends.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfl.client import NumPyClient, run_client
from hfl.history import History
from hfl.server import Server, ServerConfig
from hfl.strategy.base import Strategy
from party import ConfigError, InMemoryNetwork, Party, Role

log = logging.getLogger("hfl.simulation")

SERVER = "server"


@dataclass
class Context:
    """What a ``client_fn(context)`` gets (Flower's ``Context.node_config`` keys)."""

    node_id: int
    node_config: dict[str, Any] = field(default_factory=dict)
    run_config: dict[str, Any] = field(default_factory=dict)
    #: the client's own state, kept between its rounds (Flower's ``Context.state``)
    state: dict[str, Any] = field(default_factory=dict)


def _factory(client_fn: Callable[..., Any], i: int, n: int,
             run_config: Mapping[str, Any] | None = None) -> Callable[[], NumPyClient]:
    params = list(inspect.signature(client_fn).parameters)
    wants_context = bool(params) and params[0] == "context"
    ctx = Context(i, {"partition-id": i, "num-partitions": n}, dict(run_config or {}))

    def make() -> NumPyClient:
        c = client_fn(ctx) if wants_context else client_fn(str(i))
        return c.to_client() if hasattr(c, "to_client") else c

    return make


def _check_secure_agg(secure_agg: bool | Mapping[str, Any], num_clients: int,
                      strategy: Strategy | None) -> None:
    """Too few clients for secure aggregation: a ConfigError now, never a silent no-op round."""
    from hfl.secure import check_settings
    from hfl.strategy import FedAvg

    settings = {} if isinstance(secure_agg, bool) else dict(secure_agg)
    st = strategy if strategy is not None else FedAvg()
    # every client connects before round 1, so a FedAvg-style strategy samples this many per
    # round, and that is the cohort each SecAgg round is configured for
    per_round = getattr(st, "num_fit_clients", None)
    k = min(int(per_round(num_clients)), num_clients) if callable(per_round) else num_clients
    if k < num_clients:
        check_settings(settings, num_clients=k, context=(
            f"each round of {type(st).__name__} (it samples {k} of the {num_clients} clients: "
            "raise fraction_fit or min_fit_clients)"))
    else:
        check_settings(settings, num_clients=num_clients, context=f"simulate(num_clients={num_clients})")


def simulate(
    client_fn: Callable[..., Any],
    num_clients: int,
    *,
    config: ServerConfig | None = None,
    strategy: Strategy | None = None,
    num_rounds: int | None = None,
    secure_agg: bool | Mapping[str, Any] = False,
    num_workers: int | None = None,
    client_names: Sequence[str] | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    progress: bool = False,
    network: InMemoryNetwork | None = None,
    stop_condition: Callable[[History], bool] | None = None,
    backend: str = "inprocess",
    client_resources: Mapping[str, Any] | None = None,
    ray_init_args: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    ray_start_timeout_s: float = 180.0,
) -> History:
    """Run federated training with ``num_clients`` virtual clients.

    Args:
        client_fn: ``client_fn(cid: str) -> NumPyClient`` (or ``client_fn(context)``,
            ``context.node_config["partition-id"]``); called per instruction.
        num_clients: number of virtual clients; client ``i`` is party
            ``client_names[i]`` (default ``client_<i>``) and gets ``cid = str(i)``.
        config: rounds and per-round timeout (``num_rounds`` is a shortcut).
        strategy: aggregation rule (default FedAvg).
        secure_agg: run SecAgg+ among each round's clients (see :class:`Server`). Fewer
            clients than secure aggregation needs (:func:`hfl.secure.min_clients`: 3
            with the default settings), in the federation or sampled per round by
            the strategy, is a ConfigError here, before any client starts.
        num_workers: in-process: threads running client code (default: CPU count);
            Ray: at most this many actors (default: as many as ``client_resources`` fit).
        seed: client sampling seed.
        checkpoint_dir, output_dir, progress: as for :class:`Server`.
        network: an :class:`InMemoryNetwork` to use (tests use it to kill a client;
            in-process only).
        stop_condition: ``f(history) -> bool`` checked after each round; True stops early.
        backend: ``"inprocess"`` (default) or ``"ray"`` (:mod:`hfl.ray`).
        client_resources: Ray: what one client needs, Flower's names
            (``{"num_cpus": 1, "num_gpus": 0}`` by default; ``memory`` in bytes too).
        ray_init_args: Ray: arguments of ``ray.init`` (``{"address": "auto"}`` or
            ``{"address": "ray://head:10001"}`` joins a cluster; ``num_cpus`` caps a
            local one). The dashboard is off unless ``include_dashboard=True``.
        run_config: ``context.run_config`` of every client.
        ray_start_timeout_s: Ray: a TesseraError, not a hang, when Ray does not start
            within this time.

    Returns:
        The :class:`History`; ``history.parameters`` is the final global model.

    Raises:
        ConfigError: bad ``secure_agg`` settings, or too few clients for them; an
            unknown ``backend`` or ``client_resources`` key; Ray not installed.
        TesseraError: Ray could not start or join its cluster.
    """
    if backend not in ("inprocess", "ray"):
        raise ConfigError(f"backend must be 'inprocess' or 'ray', got {backend!r}")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    cfg = config or ServerConfig(num_rounds=num_rounds if num_rounds is not None else 1)
    if num_rounds is not None and config is not None:
        cfg = ServerConfig(num_rounds=num_rounds, round_timeout=config.round_timeout)
    names = list(client_names) if client_names is not None else [f"client_{i}" for i in range(num_clients)]
    if len(names) != num_clients:
        raise ValueError(f"{len(names)} client_names for {num_clients} clients")
    if secure_agg is not False:
        _check_secure_agg(secure_agg, num_clients, strategy)
    if backend == "ray":
        if network is not None:
            raise ConfigError("network= is for the in-process backend; backend='ray' makes its own")
        from hfl.ray import simulate_on_ray

        return simulate_on_ray(  # type: ignore[no-any-return]
            client_fn, names, server_cls=Server, context_cls=Context, num_rounds=cfg.num_rounds, round_timeout=cfg.round_timeout,
            strategy=strategy, secure_agg=secure_agg, client_resources=client_resources,
            ray_init_args=ray_init_args, num_workers=num_workers, seed=seed,
            checkpoint_dir=checkpoint_dir, output_dir=output_dir, progress=progress,
            stop_condition=stop_condition, run_config=run_config,
            ray_start_timeout_s=ray_start_timeout_s)
    net = network or InMemoryNetwork([SERVER, *names])
    workers = num_workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hfl-sim")
    ended: dict[str, str] = {}

    def serve(i: int, name: str) -> None:
        party = Party(name, net.transport(name), role=Role.CLIENT)
        ended[name] = run_client(party, _factory(client_fn, i, num_clients, run_config), server=SERVER,
                                 executor=pool)

    threads = [threading.Thread(target=serve, args=(i, n), name=f"sim-{n}", daemon=True)
               for i, n in enumerate(names)]
    for t in threads:
        t.start()
    server_party = Party(SERVER, net.transport(SERVER), role=Role.SERVER)
    try:
        server = Server(server_party, strategy, clients=names, secure_agg=secure_agg,
                        checkpoint_dir=checkpoint_dir, output_dir=output_dir, seed=seed,
                        progress=progress, wait_for_clients_s=60.0,
                        min_clients_at_start=num_clients, stop_condition=stop_condition)
        history = server.fit(cfg.num_rounds, cfg.round_timeout)
        server.shutdown()
        return history
    finally:
        server_party.close()  # clients still waiting see the server gone and leave
        deadline = time.monotonic() + 1.0  # a client stuck in user code is left behind (daemon)
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        pool.shutdown(wait=False, cancel_futures=True)


def start_simulation(*, client_fn: Callable[..., Any], num_clients: int,
                     config: ServerConfig | None = None, strategy: Strategy | None = None,
                     **kwargs: Any) -> History:
    """Flower's legacy ``start_simulation`` spelling of :func:`simulate`.

    ``backend="ray"`` with ``client_resources`` and ``ray_init_args`` runs on Ray as
    Flower's does; the default backend stays in-process (there the two are unused).
    """
    return simulate(client_fn, num_clients, config=config, strategy=strategy, **kwargs)
