"""``python -m hfl run APP_DIR``: run a Flower 1.42 app (``flwr run .``) with tessera.

An app directory holds a ``pyproject.toml`` with Flower's tables::

    [tool.flwr.app.components]
    serverapp = "pytorchexample.server_app:app"
    clientapp = "pytorchexample.client_app:app"

    [tool.flwr.app.config]
    num-server-rounds = 3

    [tool.flwr.federations.local-simulation]
    options.num-supernodes = 10

Two ways to run it:

- ``--simulation`` (``--num-supernodes N``, default the file's ``options.num-supernodes``;
  the default mode when the default federation is a simulation one, as ``flwr run .``):
  all nodes in this process. A Message-API app (``ServerApp`` with ``@app.main()``) runs
  its ``main(grid, context)`` over an :class:`~hfl.server.grid.InMemoryGrid` of N
  ClientApps; a legacy app (``ServerApp(server_fn=...)`` + ``ClientApp(client_fn=...)``)
  runs on :func:`hfl.simulate` (tessera's server and codec, in memory).
- deployed (``--deploy``, or no simulation federation): this process is the server, over gRPC with mutual TLS
  (the development federation when there is no federation file, or ``--federation``);
  each node runs ``python -m hfl supernode APP_DIR --partition-id I --num-partitions N``.
  A legacy app runs on :func:`hfl.server.start_server` / :func:`hfl.client.start_client`;
  a Message-API app runs ``main`` over a :class:`~hfl.server.grid.PartyGrid`.

``--secure-agg`` (legacy apps) aggregates with SecAgg+, as ``start_server(secure_agg=True)``.
``--run-config "key=value key2=value2"`` overrides ``[tool.flwr.app.config]`` (values
parsed as TOML: numbers, booleans, quoted strings). ``context.node_config`` has
``partition-id`` and ``num-partitions``; ``context.run_config`` the merged config.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from hfl.clientapp import AppNode, ClientApp
from hfl.common.message import Context
from hfl.server.server_app import ServerApp
from party import ConfigError

log = logging.getLogger("hfl.run")


@dataclass
class App:
    """A loaded app: its directory, components and config."""

    directory: Path
    serverapp: ServerApp
    clientapp: ClientApp
    run_config: dict[str, Any]
    num_supernodes: int | None
    #: the default federation's ``address`` (a deployment), if it names one
    address: str | None = None

    @property
    def simulation_by_default(self) -> bool:
        """What ``flwr run .`` does with this file: simulate when the default federation is a
        simulation one (``options.num-supernodes``, no ``address``)."""
        return self.num_supernodes is not None and self.address is None


def parse_run_config(text: str | None) -> dict[str, Any]:
    """``"a=1 b='x' c=true"`` -> ``{"a": 1, "b": "x", "c": True}`` (each value parsed as TOML)."""
    out: dict[str, Any] = {}
    if not text:
        return out
    import shlex

    for item in shlex.split(text):
        if "=" not in item:
            raise ConfigError(f"--run-config item {item!r} is not key=value")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = tomllib.loads(f"x = {v}")["x"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v  # a bare string
    return out


def _load_object(spec: str, what: str, kind: type) -> Any:
    if ":" not in spec:
        raise ConfigError(f"[tool.flwr.app.components].{what} = {spec!r} is not 'module:attribute'")
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"{what} {spec!r}: cannot import {mod_name}: {e}") from e
    obj = getattr(mod, attr, None)
    if not isinstance(obj, kind):
        raise ConfigError(f"{what} {spec!r} is a {type(obj).__name__}, not an hfl {kind.__name__} "
                          f"(import it from hfl: 'from hfl.{'serverapp' if kind is ServerApp else 'clientapp'} "
                          f"import {kind.__name__}')")
    return obj


def load_app(directory: str | Path, run_config_override: dict[str, Any] | None = None) -> App:
    """Read ``pyproject.toml``, put the app on ``sys.path`` and import its components."""
    d = Path(directory).resolve()
    pp = d / "pyproject.toml"
    if not pp.is_file():
        raise ConfigError(f"{d}: no pyproject.toml (a Flower app directory has one)")
    data = tomllib.loads(pp.read_text())
    flwr = data.get("tool", {}).get("flwr", {})
    comps = flwr.get("app", {}).get("components", {})
    for key in ("serverapp", "clientapp"):
        if key not in comps:
            raise ConfigError(f"{pp}: [tool.flwr.app.components] has no {key}")
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))
    run_config = dict(flwr.get("app", {}).get("config", {}))
    run_config.update(run_config_override or {})
    feds = flwr.get("federations", {})
    default = feds.get("default")
    fed = feds.get(default, {}) if isinstance(default, str) else {}
    n = fed.get("options", {}).get("num-supernodes")
    return App(d, _load_object(comps["serverapp"], "serverapp", ServerApp),
               _load_object(comps["clientapp"], "clientapp", ClientApp), run_config,
               int(n) if n is not None else None, fed.get("address"))


def run_simulation(app: App, num_supernodes: int, *, secure_agg: bool = False) -> Any:
    """Run the app with ``num_supernodes`` nodes in this process; returns the legacy History or None."""
    if num_supernodes < 1:
        raise ConfigError(f"--num-supernodes must be >= 1, got {num_supernodes}")
    context = Context(run_id=1, node_id=0, run_config=dict(app.run_config))
    if app.serverapp.is_legacy:
        if app.clientapp.client_fn is None:
            raise ConfigError("a legacy ServerApp(server_fn=...) needs a ClientApp(client_fn=...)")
        import hfl

        comps = app.serverapp.components(context)
        if comps.server is not None:
            raise ConfigError("ServerAppComponents(server=...) is not supported: pass strategy= and config=")
        clientapp = app.clientapp

        def client_fn(context: Any) -> Any:
            return clientapp.client(context)

        return hfl.simulate(client_fn, num_supernodes, config=comps.config, strategy=comps.strategy,
                            run_config=app.run_config, secure_agg=secure_agg)
    from hfl.server.grid import InMemoryGrid

    if secure_agg:
        raise ConfigError("--secure-agg runs legacy apps (ServerApp(server_fn=...)) only: a Message-API "
                          "ServerApp's main() reads every reply, so the server would see each model")
    if app.clientapp.client_fn is not None:
        raise ConfigError("a Message-API ServerApp (@app.main) needs a ClientApp with @app.train() / "
                          "@app.evaluate() handlers, not client_fn")
    grid = InMemoryGrid([app.clientapp] * num_supernodes, run_config=app.run_config)
    app.serverapp(grid, context)
    return None


def run_server(app: App, *, server_address: str, federation: str | None, num_supernodes: int | None,
               wait_for_clients_s: float, secure_agg: bool = False) -> Any:
    """This process as the app's server over the federation (gRPC, mutual TLS)."""
    context = Context(run_id=1, node_id=0, run_config=dict(app.run_config))
    if app.serverapp.is_legacy:
        import hfl

        comps = app.serverapp.components(context)
        return hfl.server.start_server(server_address=server_address, config=comps.config,
                                       strategy=comps.strategy, federation=federation,
                                       wait_for_clients_s=wait_for_clients_s,
                                       min_clients_at_start=num_supernodes or 0, secure_agg=secure_agg)
    if secure_agg:
        raise ConfigError("--secure-agg runs legacy apps (ServerApp(server_fn=...)) only: a Message-API "
                          "ServerApp's main() reads every reply, so the server would see each model")
    from hfl.deploy import server_party
    from hfl.server import Server
    from hfl.server.grid import PartyGrid

    with server_party(server_address=server_address, federation=federation, name=None,
                      host_router=True) as (party, clients):
        server = Server(party, clients=clients, wait_for_clients_s=wait_for_clients_s)
        if num_supernodes:
            server.wait_for_clients(num_supernodes)
        grid = PartyGrid(server)
        try:
            app.serverapp(grid, context)
        finally:
            server.shutdown()
            import time

            time.sleep(0.5)  # let the router deliver the Shutdowns before it stops
    return None


def run_supernode(app: App, *, partition_id: int, num_partitions: int, server_address: str | None,
                  federation: str | None, name: str | None, max_wait_time: float) -> str:
    """One node of a deployed app: serve the server's instructions until it says shutdown."""
    import hfl

    ctx = Context(run_id=1, node_id=partition_id + 1, run_config=dict(app.run_config),
                  node_config={"partition-id": partition_id, "num-partitions": num_partitions})
    if app.clientapp.client_fn is not None:
        clientapp = app.clientapp
        client = clientapp.client(ctx)
        return str(hfl.client.start_client(server_address=server_address, client=client,
                                           federation=federation, name=name, max_wait_time=max_wait_time))
    return str(hfl.client.start_client(server_address=server_address,
                                       client=AppNode(app.clientapp, ctx), federation=federation,
                                       name=name, max_wait_time=max_wait_time))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hfl", description="Run Flower apps with tessera.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run an app (flwr run .)")
    r.add_argument("app_dir", type=Path)
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--simulation", action="store_true",
                      help="all nodes in this process (the default when the pyproject's default "
                           "federation is a simulation one, as with flwr run .)")
    mode.add_argument("--deploy", action="store_true", help="this process is the server; nodes join")
    r.add_argument("--num-supernodes", type=int, default=None)
    r.add_argument("--run-config", default=None, help='overrides, e.g. "num-server-rounds=5 lr=0.1"')
    r.add_argument("--server-address", default="0.0.0.0:8080", help="deployed: where the router listens")
    r.add_argument("--federation", default=None, help="deployed: federation TOML (default: development federation)")
    r.add_argument("--wait-for-clients-s", type=float, default=300.0)
    r.add_argument("--secure-agg", action="store_true",
                   help="legacy apps: SecAgg+ (the server sees only the sum of the updates)")
    s = sub.add_parser("supernode", help="one node of a deployed app")
    s.add_argument("app_dir", type=Path)
    s.add_argument("--partition-id", type=int, required=True)
    s.add_argument("--num-partitions", type=int, required=True)
    s.add_argument("--run-config", default=None)
    s.add_argument("--server-address", default="127.0.0.1:8080")
    s.add_argument("--federation", default=None)
    s.add_argument("--name", default=None, help="party name (default: a free client_N)")
    s.add_argument("--max-wait-time", type=float, default=60.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = load_app(args.app_dir, parse_run_config(args.run_config))
    if args.cmd == "run":
        n = args.num_supernodes or app.num_supernodes
        if args.simulation or (not args.deploy and app.simulation_by_default):
            if n is None:
                raise SystemExit("--simulation needs --num-supernodes (or options.num-supernodes in "
                                 "[tool.flwr.federations.<default>])")
            run_simulation(app, n, secure_agg=args.secure_agg)
        else:
            run_server(app, server_address=args.server_address, federation=args.federation,
                       num_supernodes=args.num_supernodes, wait_for_clients_s=args.wait_for_clients_s,
                       secure_agg=args.secure_agg)
        return 0
    why = run_supernode(app, partition_id=args.partition_id, num_partitions=args.num_partitions,
                        server_address=args.server_address, federation=args.federation,
                        name=args.name, max_wait_time=args.max_wait_time)
    print(why)
    return 0


__all__ = ["App", "load_app", "main", "parse_run_config", "run_server", "run_simulation", "run_supernode"]
