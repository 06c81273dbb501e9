"""Over gRPC with mutual TLS: same model as the simulation; a killed client process; a
server killed mid-run and restarted (fresh SecAgg round, resumed from its checkpoint)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hfl
from hfl.checkpoint import load_latest
from hfl.strategy import FedAvg
from party.certs import init_certs
from party.config import write_federation
from party.local import free_port

from .helpers import LinearClient, linear_client_fn

pytestmark = pytest.mark.grpc
ROOT = Path(__file__).resolve().parents[2]



def make_federation(d: Path, n: int) -> tuple[Path, int]:
    port = free_port()
    names = [f"client_{i}" for i in range(n)]
    init_certs(d / "certs", ["server", *names], overwrite=True)
    path = write_federation(d / "federation.toml", name="hfl-test", router=f"127.0.0.1:{port}",
                            parties={"server": "server", **dict.fromkeys(names, "client")})
    return path, port


def _strategy(n: int) -> FedAvg:
    return FedAvg(fraction_fit=0.75, min_fit_clients=2, min_available_clients=n,
                  evaluate_metrics_aggregation_fn=hfl.strategy.weighted_metrics)


def test_same_global_model_from_simulation_and_from_grpc(tmp_path: Path) -> None:
    n = 4
    fed, port = make_federation(tmp_path, n)
    outcomes: dict[str, str] = {}

    def client(i: int) -> None:
        outcomes[f"client_{i}"] = hfl.start_client(
            server_address=f"127.0.0.1:{port}", client=LinearClient(i).to_client(),
            federation=fed, name=f"client_{i}", max_wait_time=30)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    h_grpc = hfl.start_server(server_address=f"127.0.0.1:{port}", federation=fed,
                              config=hfl.ServerConfig(num_rounds=3), strategy=_strategy(n),
                              seed=11, progress=False, min_clients_at_start=n,
                              output_dir=tmp_path / "out")
    for t in threads:
        t.join(20)
    assert outcomes == {f"client_{i}": "shutdown" for i in range(n)}
    h_sim = hfl.simulate(linear_client_fn, n, num_rounds=3, strategy=_strategy(n), seed=11)
    assert [r["fit_clients"] for r in h_grpc.rounds] == [r["fit_clients"] for r in h_sim.rounds]
    assert h_grpc.parameters is not None and h_sim.parameters is not None
    for a, b in zip(h_grpc.parameters, h_sim.parameters, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()  # bit-identical
    assert h_grpc.losses_distributed == h_sim.losses_distributed
    assert (tmp_path / "out" / "history.png").is_file()


CLIENT_SCRIPT = """
import sys, time, pathlib
sys.path.insert(0, {root!r})
import hfl
from tests.hfl.helpers import LinearClient

i, marker = int(sys.argv[1]), pathlib.Path(sys.argv[2])

class C(LinearClient):
    def fit(self, parameters, config):
        if i == 2 and config.get("round") == 2:
            marker.write_text("training")   # the test kills us now
            time.sleep(60)
        return super().fit(parameters, config)

print(hfl.start_client(client=C(i), federation=sys.argv[3], name=f"client_{{i}}", max_wait_time=30))
"""


def _spawn_client(tmp_path: Path, i: int, fed: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT.format(root=str(ROOT)))
    return subprocess.Popen([sys.executable, str(script), str(i), str(tmp_path / "marker"), str(fed)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_client_process_killed_mid_round_is_dropped(tmp_path: Path) -> None:
    fed, port = make_federation(tmp_path, 4)
    procs = [_spawn_client(tmp_path, i, fed) for i in range(4)]
    marker = tmp_path / "marker"

    def killer() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        procs[2].send_signal(signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    try:
        h = hfl.start_server(
            server_address=f"127.0.0.1:{port}", federation=fed, progress=False,
            config=hfl.ServerConfig(num_rounds=3, round_timeout=30),
            strategy=FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0,
                            on_fit_config_fn=lambda r: {"round": r}),
            min_clients_at_start=4)
        outs = [p.communicate(timeout=30)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    r2 = h.rounds[1]
    assert "client_2" in r2["fit_failures"] and "disconnected" in r2["fit_failures"]["client_2"]
    assert r2["fit_results"] == 3 and r2["time_s"] < 20  # not the 30 s timeout
    assert h.rounds[2]["fit_results"] == 3
    assert procs[2].returncode == -signal.SIGKILL
    assert all("shutdown" in o for k, o in enumerate(outs) if k != 2), outs


SERVER_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
import hfl

fed, port, ck, out, slow = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1"

def evaluate_fn(rnd, params, config):
    if slow and rnd == 2:
        import time; time.sleep(60)   # the test kills us after round 2's checkpoint
    return float(np.abs(params[0]).sum()), {{}}

h = hfl.start_server(server_address=f"127.0.0.1:{{port}}", federation=fed, progress=False,
                     config=hfl.ServerConfig(num_rounds=4, round_timeout=30), secure_agg=True,
                     strategy=hfl.FedAvg(min_fit_clients=4, min_available_clients=4,
                                         fraction_evaluate=0, evaluate_fn=evaluate_fn),
                     checkpoint_dir=ck, min_clients_at_start=4)
np.savez(out, *h.parameters)
print("rounds", [r["round"] for r in h.rounds], [r["secure_agg"]["survivors"] for r in h.rounds])
"""


@pytest.mark.slow
def test_server_killed_and_restarted_resumes_with_a_fresh_secure_round(tmp_path: Path) -> None:
    fed, port = make_federation(tmp_path, 4)
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT.format(root=str(ROOT)))
    ck, out = tmp_path / "ck", tmp_path / "final.npz"
    outcomes: dict[int, str] = {}

    def client(i: int) -> None:
        outcomes[i] = hfl.start_client(client=LinearClient(i), federation=fed, name=f"client_{i}",
                                       max_wait_time=60)

    def server(slow: bool) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(script), str(fed), str(port), str(ck), str(out),
                                 "1" if slow else "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    first = server(slow=True)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ckpt = load_latest(ck) if (ck / "latest.json").exists() else None
            if ckpt is not None and ckpt.round >= 1:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # now inside round 2's central evaluation
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        saved = load_latest(ck)
        assert saved is not None and saved.round in (1, 2)
        second = server(slow=False)
        text = second.communicate(timeout=120)[0].decode()
        assert second.returncode == 0, text
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
    for t in threads:
        t.join(20)
    assert outcomes == dict.fromkeys(range(4), "shutdown")
    assert f"rounds {list(range(1, 5))}" in text and "[4, 4, 4, 4]" in text, text
    with np.load(out, allow_pickle=False) as z:
        resumed = [z[f"arr_{i}"] for i in range(len(z.files))]
    plain = hfl.simulate(linear_client_fn, 4, num_rounds=4, strategy=FedAvg(
        min_fit_clients=4, min_available_clients=4, fraction_evaluate=0))
    assert plain.parameters is not None
    for a, b in zip(resumed, plain.parameters, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=4 * 3 * 8.0 / 2**31 + 2e-7)
