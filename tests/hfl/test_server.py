"""Server behaviour under faults: bad results, stragglers, a killed client, a restart."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hfl
from hfl.checkpoint import load_latest
from hfl.strategy import FedAdam, FedAvg
from party import ConfigError, InMemoryNetwork, Party

from .helpers import BadClient, LinearClient, SlowClient, fedavg_by_hand, linear_client_fn


def _strategy(n: int, **kw: Any) -> FedAvg:
    return FedAvg(min_fit_clients=n, min_available_clients=n, fraction_evaluate=0, **kw)


@pytest.mark.parametrize("mode", ["shape", "nan", "count", "raise"])
def test_bad_client_is_rejected_and_does_not_poison_the_model(
        mode: str, caplog: pytest.LogCaptureFixture) -> None:
    def client_fn(cid: str) -> LinearClient:
        return BadClient(2, mode) if cid == "2" else LinearClient(int(cid))

    with caplog.at_level(logging.WARNING, logger="hfl"):
        h = hfl.simulate(client_fn, 4, num_rounds=1, strategy=_strategy(4))
    why = h.rounds[0]["fit_failures"]["client_2"]
    expected = {"shape": "shape (6,), the model's is (5,)", "nan": "NaN/inf",
                "count": "returned 1 arrays, the model has 2", "raise": "out of memory"}[mode]
    assert expected in why and "rejected" in why
    assert expected in caplog.text
    assert h.rounds[0]["fit_results"] == 3
    init = LinearClient(0).get_parameters({})
    want = fedavg_by_hand(init, [0, 1, 3])  # the other three only
    assert h.parameters is not None
    for g, w in zip(h.parameters, want, strict=True):
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, w.astype(np.float32), atol=1e-7)


def test_straggler_is_dropped_after_the_round_timeout() -> None:
    gate = threading.Event()

    def client_fn(cid: str) -> LinearClient:
        return SlowClient(int(cid), 30.0, gate) if cid == "1" else LinearClient(int(cid))

    try:
        h = hfl.simulate(client_fn, 3, config=hfl.ServerConfig(num_rounds=1, round_timeout=0.5),
                         strategy=_strategy(2), num_workers=3)
    finally:
        gate.set()
    assert "straggler" in h.rounds[0]["fit_failures"]["client_1"]
    assert h.rounds[0]["fit_results"] == 2
    want = fedavg_by_hand(LinearClient(0).get_parameters({}), [0, 2])
    assert h.parameters is not None
    np.testing.assert_allclose(h.parameters[0], want[0].astype(np.float32), atol=1e-7)


def test_client_killed_mid_round_is_dropped_and_the_round_completes() -> None:
    names = ["server"] + [f"client_{i}" for i in range(4)]
    net = InMemoryNetwork(names)
    killed = threading.Event()

    class DyingClient(LinearClient):
        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            if config.get("round") == 2:
                killed.set()
                net.disconnect("client_3", "killed (kill -9)")
                threading.Event().wait(5)  # the process is gone; nothing more is sent
            return super().fit(parameters, config)

    def client_fn(cid: str) -> LinearClient:
        return DyingClient(3) if cid == "3" else LinearClient(int(cid))

    h = hfl.simulate(client_fn, 4, network=net, num_workers=4,
                     config=hfl.ServerConfig(num_rounds=3, round_timeout=60),
                     strategy=FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0,
                                     on_fit_config_fn=lambda r: {"round": r}))
    assert killed.is_set()
    r2 = h.rounds[1]
    assert "disconnected" in r2["fit_failures"]["client_3"]
    assert r2["fit_results"] == 3
    assert r2["time_s"] < 4  # dropped at once, not after a timeout
    assert h.rounds[2]["fit_results"] == 3 and "client_3" not in h.rounds[2]["fit_clients"]


def _crashing_eval(crash_at: int) -> Any:
    def evaluate_fn(rnd: int, params: list[np.ndarray], config: dict[str, Any]) -> Any:
        if rnd == crash_at:
            raise KeyboardInterrupt("server killed")
        return float(np.abs(params[0]).sum()), {}
    return evaluate_fn


def test_server_restart_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    def strategy(crash_at: int = -1) -> FedAdam:
        return FedAdam(eta=0.05, min_fit_clients=2, min_available_clients=4, fraction_fit=0.5,
                       fraction_evaluate=0, evaluate_fn=_crashing_eval(crash_at))

    full = hfl.simulate(linear_client_fn, 4, num_rounds=4, strategy=strategy(), seed=7)
    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        hfl.simulate(linear_client_fn, 4, num_rounds=4, strategy=strategy(crash_at=3), seed=7,
                     checkpoint_dir=ck)
    saved = load_latest(ck)
    assert saved is not None and saved.round == 2 and "m_t" in saved.strategy_state
    resumed = hfl.simulate(linear_client_fn, 4, num_rounds=4, strategy=strategy(), seed=7,
                           checkpoint_dir=ck, output_dir=tmp_path / "out")
    assert [r["round"] for r in resumed.rounds] == [1, 2, 3, 4]
    assert full.parameters is not None and resumed.parameters is not None
    for a, b in zip(full.parameters, resumed.parameters, strict=True):
        np.testing.assert_array_equal(a, b)  # deterministic: bit-identical
    assert [r["fit_clients"] for r in full.rounds] == [r["fit_clients"] for r in resumed.rounds]
    hist = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [r for r, _ in hist["losses_centralized"]] == [0, 1, 2, 3, 4]
    assert (tmp_path / "out" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_latest(ck) is not None and load_latest(ck).round == 4  # type: ignore[union-attr]


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    hfl.simulate(linear_client_fn, 3, num_rounds=1, strategy=_strategy(3), checkpoint_dir=tmp_path)
    f = next(tmp_path.glob("round_*.npz"))
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="sha256"):
        load_latest(tmp_path)


def test_not_enough_clients_is_a_clear_error() -> None:
    net = InMemoryNetwork(["server", "a", "b"])
    server = hfl.Server(Party("server", net.transport("server")), _strategy(2),
                        wait_for_clients_s=0.2)
    with pytest.raises(hfl.NotEnoughClients, match="only 0 of the required 2"):
        server.fit(1)


def test_secure_agg_needs_a_weighted_sum_strategy() -> None:
    class Median(hfl.FedAvg):  # a custom aggregate_fit needs each client's model
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            return None, {}

    net = InMemoryNetwork(["server", "a"])
    with pytest.raises(ConfigError, match="weighted sum"):
        hfl.Server(Party("server", net.transport("server")), Median(), secure_agg=True)
    with pytest.raises(ConfigError, match="unknown setting"):
        hfl.Server(Party("server", net.transport("server")), FedAvg(), secure_agg={"clipp": 3})


def test_history_and_metrics_aggregation(tmp_path: Path) -> None:
    s = FedAvg(min_fit_clients=3, min_available_clients=3,
               fit_metrics_aggregation_fn=hfl.strategy.weighted_metrics,
               evaluate_metrics_aggregation_fn=hfl.strategy.weighted_metrics,
               evaluate_fn=lambda r, p, c: (1.0 / (r + 1), {"accuracy": r / 10}))
    h = hfl.simulate(linear_client_fn, 3, num_rounds=2, strategy=s, output_dir=tmp_path)
    assert [r for r, _ in h.losses_distributed] == [1, 2]
    assert h.losses_distributed[1][1] < h.losses_distributed[0][1]
    assert "train_loss" in h.metrics_distributed_fit and "mae" in h.metrics_distributed
    assert h.metrics_centralized["accuracy"] == [(0, 0.0), (1, 0.1), (2, 0.2)]
    d = json.loads((tmp_path / "history.json").read_text())
    assert d["metrics_distributed"]["mae"][0][0] == 1
