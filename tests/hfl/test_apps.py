"""Flower 1.42 apps (ServerApp/ClientApp, pyproject components) run by ``python -m hfl run``."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hfl
import hfl.serverapp.strategy
from hfl.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from hfl.client import run_client
from hfl.clientapp import AppNode, ClientApp
from hfl.run import load_app, parse_run_config, run_simulation
from hfl.server import PartyGrid, Server, ServerApp, ServerAppComponents, ServerConfig
from hfl.server.grid import InMemoryGrid
from party import ConfigError, InMemoryNetwork, Party, Role

from .helpers import linear_client_fn

MESSAGE_APP = '''
import numpy as np
from hfl.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from hfl.clientapp import ClientApp
from hfl.serverapp import Grid, ServerApp
from hfl.serverapp.strategy import FedAvg

client = ClientApp()
server = ServerApp()
RESULT = {}


@client.train()
def train(msg: Message, context: Context) -> Message:
    (w,) = msg.content["arrays"].to_numpy_ndarrays()
    pid = context.node_config["partition-id"]
    new = w + (pid + 1) * msg.content["config"]["lr"]
    return Message(RecordDict({"arrays": ArrayRecord([new]),
                               "metrics": MetricRecord({"num-examples": pid + 1})}), reply_to=msg)


@server.main()
def main(grid: Grid, context: Context) -> None:
    result = FedAvg(fraction_evaluate=0.0).start(
        grid=grid, initial_arrays=ArrayRecord([np.zeros(2)]),
        train_config=ConfigRecord({"lr": context.run_config["lr"]}),
        num_rounds=context.run_config["num-server-rounds"])
    RESULT["w"] = result.arrays.to_numpy_ndarrays()[0]
'''

LEGACY_APP = '''
import hfl as fl
from hfl.clientapp import ClientApp
from hfl.serverapp import ServerApp, ServerAppComponents
from tests.hfl.helpers import LinearClient


def client_fn(context):
    return LinearClient(context.node_config["partition-id"]).to_client()


def server_fn(context):
    strategy = fl.server.strategy.FedAvg(min_available_clients=3, fraction_evaluate=0.0)
    return ServerAppComponents(strategy=strategy,
                               config=fl.server.ServerConfig(num_rounds=context.run_config["rounds"]))


client = ClientApp(client_fn=client_fn)
server = ServerApp(server_fn=server_fn)
'''


def _app_dir(tmp_path: Path, name: str, code: str, config: str) -> Path:
    d = tmp_path / name
    (d / name).mkdir(parents=True)
    (d / name / "__init__.py").write_text("")
    (d / name / "app.py").write_text(code)
    (d / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.flwr.app.components]
        serverapp = "{name}.app:server"
        clientapp = "{name}.app:client"

        [tool.flwr.app.config]
        {config}

        [tool.flwr.federations]
        default = "local-simulation"

        [tool.flwr.federations.local-simulation]
        options.num-supernodes = 3
    """))
    return d


def test_message_api_app_in_simulation(tmp_path: Path) -> None:
    app = load_app(_app_dir(tmp_path, "msgapp", MESSAGE_APP, "num-server-rounds = 2\nlr = 0.5"),
                   parse_run_config("num-server-rounds=3"))
    assert app.num_supernodes == 3 and app.run_config == {"num-server-rounds": 3, "lr": 0.5}
    assert app.simulation_by_default  # as `flwr run .` with a local-simulation default federation
    run_simulation(app, 3)
    import msgapp.app as m  # type: ignore[import-not-found]

    # each round adds the example-weighted mean of (pid + 1) * lr: (1*1 + 2*2 + 3*3) / 6 * 0.5
    np.testing.assert_allclose(m.RESULT["w"], np.full(2, 3 * (14 / 6) * 0.5))


def test_legacy_app_in_simulation_is_hfl_simulate(tmp_path: Path) -> None:
    app = load_app(_app_dir(tmp_path, "legacyapp", LEGACY_APP, "rounds = 2"))
    h = run_simulation(app, 3)
    ref = hfl.simulate(linear_client_fn, 3, num_rounds=2, strategy=hfl.FedAvg(
        min_available_clients=3, fraction_evaluate=0.0))
    assert h.parameters is not None and ref.parameters is not None
    for a, b in zip(h.parameters, ref.parameters, strict=True):
        np.testing.assert_array_equal(a, b)


def test_legacy_app_with_secure_aggregation_gives_the_same_model(tmp_path: Path) -> None:
    app = load_app(_app_dir(tmp_path, "secapp", LEGACY_APP, "rounds = 1"))
    plain = run_simulation(app, 3)
    secure = run_simulation(app, 3, secure_agg=True)
    assert secure.rounds[0]["secure_agg"]["survivors"] == 3
    for a, b in zip(plain.parameters, secure.parameters, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)  # SecAgg+ quantises the updates
    msg = load_app(_app_dir(tmp_path, "msgsec", MESSAGE_APP, "num-server-rounds = 1\nlr = 0.5"))
    with pytest.raises(ConfigError, match="legacy apps"):
        run_simulation(msg, 3, secure_agg=True)


def test_legacy_serverapp_over_a_grid_of_legacy_clientapps() -> None:
    client = ClientApp(client_fn=lambda context: linear_client_fn(
        str(context.node_config["partition-id"])).to_client())
    server = ServerApp(server_fn=lambda context: ServerAppComponents(
        strategy=hfl.FedAvg(min_available_clients=3, fraction_evaluate=1.0, min_evaluate_clients=3),
        config=ServerConfig(num_rounds=2)))
    assert server.is_legacy and isinstance(server.components(Context()).strategy, hfl.FedAvg)
    from hfl.server.server_app import _run_legacy_over_grid

    h = _run_legacy_over_grid(server.components(Context()), InMemoryGrid([client] * 3))
    ref = hfl.simulate(linear_client_fn, 3, num_rounds=2, strategy=hfl.FedAvg(
        min_available_clients=3, fraction_evaluate=1.0, min_evaluate_clients=3))
    assert [r for r, _ in h.losses_distributed] == [1, 2]
    np.testing.assert_allclose([v for _, v in h.losses_distributed],
                               [v for _, v in ref.losses_distributed], rtol=1e-6)


def test_message_api_over_a_party_grid_matches_the_in_memory_grid() -> None:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        (w,) = msg.content["arrays"].to_numpy_ndarrays()
        k = context.node_config["partition-id"] + 1
        return Message(RecordDict({"arrays": ArrayRecord([w + k]),
                                   "metrics": MetricRecord({"num-examples": k, "k": float(k)})}),
                       reply_to=msg)

    names = ["client_0", "client_1", "client_2"]
    net = InMemoryNetwork(["server", *names])
    ended: dict[str, str] = {}

    def node(i: int) -> None:
        ctx = Context(node_id=i + 1, node_config={"partition-id": i, "num-partitions": 3})
        ended[names[i]] = run_client(Party(names[i], net.transport(names[i]), role=Role.CLIENT),
                                     AppNode(app, ctx), idle_timeout_s=30)

    threads = [threading.Thread(target=node, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    server = Server(Party("server", net.transport("server"), role=Role.SERVER), wait_for_clients_s=20)
    server.wait_for_clients(3)
    init = ArrayRecord([np.zeros(3)])
    strategy: Any = hfl.serverapp.strategy.FedAvg(fraction_evaluate=0.0, min_available_nodes=3)
    over_party = strategy.start(grid=PartyGrid(server), initial_arrays=init, num_rounds=2)
    server.shutdown()
    for t in threads:
        t.join(timeout=10)
    assert ended == dict.fromkeys(names, "shutdown")
    in_memory = hfl.serverapp.strategy.FedAvg(fraction_evaluate=0.0, min_available_nodes=3).start(
        grid=InMemoryGrid([app] * 3), initial_arrays=init, num_rounds=2)
    np.testing.assert_allclose(over_party.arrays.to_numpy_ndarrays()[0],
                               in_memory.arrays.to_numpy_ndarrays()[0], rtol=1e-12)
    np.testing.assert_allclose(over_party.arrays.to_numpy_ndarrays()[0], np.full(3, 2 * 14 / 6))
    assert over_party.train_metrics_clientapp[2]["k"] == pytest.approx(14 / 6)


def test_app_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no pyproject\.toml"):
        load_app(tmp_path)
    assert parse_run_config("a=1 b='x y' c=true d=0.5 e=word") == {
        "a": 1, "b": "x y", "c": True, "d": 0.5, "e": "word"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_run_config("oops")
    app = ClientApp()
    with pytest.raises(ValueError, match="no handler for message type 'evaluate'"):
        app(Message(RecordDict(), 1, "evaluate"), Context())
    with pytest.raises(ValueError, match="not both"):
        ClientApp(client_fn=lambda c: None).train()


@pytest.mark.grpc
@pytest.mark.slow
def test_message_api_app_deployed_over_grpc_zero_config(tmp_path: Path) -> None:
    """``python -m hfl run APP`` as the server and three ``python -m hfl supernode APP`` nodes,
    over gRPC with mutual TLS in a development federation (no certificate, no TOML)."""
    import os
    import subprocess
    import sys

    from party.local import free_port

    root = Path(__file__).resolve().parents[2]
    code = MESSAGE_APP + "\nimport atexit\natexit.register(lambda: 'w' in RESULT and print('RESULT', list(RESULT['w'])))\n"
    d = _app_dir(tmp_path, "msgapp_grpc", code, "num-server-rounds = 2\nlr = 0.5")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(root))
    hfl_cmd = [sys.executable, "-m", "hfl"]
    srv = subprocess.Popen([*hfl_cmd, "run", str(d), "--deploy", "--server-address", f"127.0.0.1:{port}",
                            "--num-supernodes", "3"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    nodes = [subprocess.Popen([*hfl_cmd, "supernode", str(d), "--partition-id", str(i),
                               "--num-partitions", "3", "--server-address", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(3)]
    try:
        out, _ = srv.communicate(timeout=240)
        nouts = [n.communicate(timeout=60)[0] for n in nodes]
    finally:
        for p in (srv, *nodes):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert srv.returncode == 0, out[-3000:]
    assert all(n.returncode == 0 and n_out.strip().endswith("shutdown")
               for n, n_out in zip(nodes, nouts, strict=True)), nouts
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    np.testing.assert_allclose(eval(line.split(" ", 1)[1]), np.full(2, 2 * (14 / 6) * 0.5))
