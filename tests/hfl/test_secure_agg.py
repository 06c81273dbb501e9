"""secure_agg= on vs off: the same model within quantisation error; dropouts as in secure_agg."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

import hfl
import hfl.secure
from hfl.strategy import FedAvg, FedAvgM
from party import ConfigError, InMemoryNetwork

from .helpers import LinearClient, linear_client_fn

CLIP = 8.0
STEP = CLIP / 2**31  # SecAggParams.step with the default quant_bits=32


@pytest.mark.parametrize("strategy_cls", [FedAvg, FedAvgM])
def test_secure_aggregation_on_and_off_give_the_same_model(strategy_cls: type) -> None:
    def strategy() -> FedAvg:
        kw: dict[str, Any] = {"server_momentum": 0.5} if strategy_cls is FedAvgM else {}
        return strategy_cls(fraction_fit=0.7, min_fit_clients=3, min_available_clients=6,
                            fraction_evaluate=0, **kw)

    off = hfl.simulate(linear_client_fn, 6, num_rounds=3, strategy=strategy(), seed=3)
    on = hfl.simulate(linear_client_fn, 6, num_rounds=3, strategy=strategy(), seed=3,
                      secure_agg={"clip": CLIP})
    assert [r["fit_clients"] for r in on.rounds] == [r["fit_clients"] for r in off.rounds]
    assert all(r["secure_agg"]["survivors"] == len(r["fit_clients"]) for r in on.rounds)
    assert off.parameters is not None and on.parameters is not None
    for a, b in zip(off.parameters, on.parameters, strict=True):
        # a few quantisation steps per round, plus float32 rounding of the stored model
        np.testing.assert_allclose(a, b, rtol=0, atol=3 * 3 * STEP + 2e-7)
    assert any(not np.array_equal(a, np.zeros_like(a)) for a in on.parameters)


def test_secure_round_survives_a_client_killed_during_secure_aggregation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["server"] + [f"client_{i}" for i in range(5)]
    net = InMemoryNetwork(names)
    real_round = hfl.secure.client_round

    def dying_round(party: Any, server: str, delta: Any, weight: int, **kw: Any) -> Any:
        if party.name == "client_4":
            real_send = party.send

            def send(dst: str, tag: Any, msg: Any) -> int:
                n = real_send(dst, tag, msg)
                if tag.step == "share_keys":  # its shares are out; then kill -9
                    net.disconnect("client_4", "killed")
                return n

            party.send = send
        return real_round(party, server, delta, weight, **kw)

    monkeypatch.setattr(hfl.secure, "client_round", dying_round)
    strategy = FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0)
    h = hfl.simulate(linear_client_fn, 5, network=net, num_rounds=2, strategy=strategy,
                     secure_agg={"timeout_s": 5.0, "dropout_fraction": 0.2})
    r1 = h.rounds[0]
    assert r1["fit_results"] == 5  # it trained and reported, then died inside SecAgg
    assert r1["secure_agg"]["survivors"] == 4 and "client_4" in r1["secure_agg"]["dropped"]
    assert h.rounds[1]["fit_results"] == 4 and "client_4" not in h.rounds[1]["fit_clients"]
    # round 1's model is exactly FedAvg of the four survivors (within quantisation)
    init = LinearClient(0).get_parameters({})
    from .helpers import fedavg_by_hand

    want = fedavg_by_hand(init, [0, 1, 2, 3])
    one = hfl.simulate(linear_client_fn, 4, num_rounds=1, strategy=FedAvg(
        min_fit_clients=4, min_available_clients=4, fraction_evaluate=0))
    assert one.parameters is not None
    for a, w in zip(one.parameters, want, strict=True):
        np.testing.assert_allclose(a, w.astype(np.float32), atol=1e-7)
    assert h.parameters is not None and all(np.isfinite(p).all() for p in h.parameters)


@pytest.mark.parametrize("num_clients", [1, 2])
def test_too_few_clients_for_secure_aggregation_is_refused_at_start_up(num_clients: int) -> None:
    """Issue 12: 2 clients used to give an all-zero model with nothing printed."""
    made: list[str] = []

    def client_fn(cid: str) -> LinearClient:
        made.append(cid)
        return LinearClient(int(cid))

    with pytest.raises(ConfigError) as e:
        hfl.simulate(client_fn, num_clients, num_rounds=1, secure_agg=True,
                     strategy=FedAvg(min_fit_clients=1, min_available_clients=1, fraction_evaluate=0))
    msg = str(e.value)
    assert f"simulate(num_clients={num_clients}) has {num_clients} client" in msg
    assert "needs at least 3" in msg and "subtract its own input from the sum" in msg
    assert made == []  # refused before any client was built or any round ran


def test_a_strategy_sampling_too_few_clients_per_round_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"samples 2 of the 10 clients.*needs at least 3"):
        hfl.simulate(linear_client_fn, 10, num_rounds=1, secure_agg=True,
                     strategy=FedAvg(fraction_fit=0.1, min_fit_clients=2, fraction_evaluate=0))


def test_settings_that_raise_the_minimum_are_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"has 3 clients, but secure aggregation needs at least 4 "
                                          r"\(infeasible threshold t=3"):
        hfl.simulate(linear_client_fn, 3, num_rounds=1, secure_agg={"threshold": 3},
                     strategy=FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0))
    with pytest.raises(ConfigError, match="unknown setting"):  # still checked first
        hfl.simulate(linear_client_fn, 2, num_rounds=1, secure_agg={"clipp": 3})


def test_min_clients_is_derived_from_secagg_params() -> None:
    from secure_agg import SecAggParams

    smallest = next(n for n in range(1, 20) if _accepts(SecAggParams, n, {}))
    assert hfl.secure.min_clients() == smallest == 3
    assert hfl.secure.min_clients({"threshold": 3}) == 4
    assert hfl.secure.min_clients({"dropout_fraction": 0.4}) == 5
    hfl.secure.check_clients({}, 3)
    assert hfl.secure.check_settings({"clip": 2.0}, num_clients=3) == {"clip": 2.0}
    with pytest.raises(ConfigError, match=r"the federation has 2 clients, but secure aggregation needs at least 3"):
        hfl.secure.check_settings({}, num_clients=2)
    with pytest.raises(ConfigError, match=r"do not work with 5 clients.*infeasible threshold t=2"):
        hfl.secure.check_clients({"threshold": 2}, 5)
    with pytest.raises(ConfigError, match="fit no cohort"):
        hfl.secure.min_clients({"clip": -1.0})


def _accepts(cls: Any, n: int, kw: dict[str, Any]) -> bool:
    try:
        cls(num_clients=n, vector_length=1, **kw)
    except ConfigError:
        return False
    return True


def test_too_few_clients_finishing_training_is_logged_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    """3 clients pass the start-up check; one fails in fit, so only 2 could enter SecAgg:
    the round is skipped loudly (an ERROR log and the history), the model unchanged."""
    from .helpers import BadClient

    def client_fn(cid: str) -> LinearClient:
        return BadClient(2, "raise") if cid == "2" else LinearClient(int(cid))

    with caplog.at_level(logging.ERROR):
        h = hfl.simulate(client_fn, 3, num_rounds=1, secure_agg={"timeout_s": 5.0},
                         strategy=FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0))
    assert "need >= 3" in h.rounds[0]["secure_agg"] and h.rounds[0]["secure_agg"].startswith("skipped")
    assert h.rounds[0]["fit_results"] == 2 and "client_2" in h.rounds[0]["fit_failures"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("secure aggregation needs >= 3 clients, 2 finished" in m for m in errors), errors
    assert h.parameters is not None
    assert all(not p.any() for p in h.parameters)  # still the initial zeros


def test_quorum_lost_mid_round_is_logged_and_recorded(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Two of three clients die inside SecAgg: below the threshold, the round aborts loudly."""
    names = ["server"] + [f"client_{i}" for i in range(3)]
    net = InMemoryNetwork(names)
    real_round = hfl.secure.client_round

    def dying_round(party: Any, server: str, delta: Any, weight: int, **kw: Any) -> Any:
        if party.name in ("client_1", "client_2"):
            real_send = party.send

            def send(dst: str, tag: Any, msg: Any) -> int:
                n = real_send(dst, tag, msg)
                if tag.step == "share_keys":
                    net.disconnect(party.name, "killed")
                return n

            party.send = send
        return real_round(party, server, delta, weight, **kw)

    monkeypatch.setattr(hfl.secure, "client_round", dying_round)
    with caplog.at_level(logging.ERROR):
        h = hfl.simulate(linear_client_fn, 3, network=net, num_rounds=1,
                         strategy=FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0),
                         secure_agg={"timeout_s": 3.0})
    rec = h.rounds[0]["secure_agg"]
    assert isinstance(rec, str) and rec.startswith("aborted:"), rec
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("secure aggregation aborted" in m for m in errors), errors
    assert h.parameters is not None and all(not p.any() for p in h.parameters)  # model unchanged


def test_a_straggler_under_secure_aggregation_is_released_and_serves_the_next_round() -> None:
    import threading

    from .helpers import SlowClient

    gate = threading.Event()
    calls: dict[str, int] = {}

    def client_fn(cid: str) -> LinearClient:
        calls[cid] = calls.get(cid, 0) + 1
        if cid == "3" and calls[cid] == 1:  # slow in round 1 only
            return SlowClient(3, 1.5, gate)
        return LinearClient(int(cid))

    h = hfl.simulate(client_fn, 4, num_workers=4,
                     config=hfl.ServerConfig(num_rounds=2, round_timeout=0.8),
                     strategy=FedAvg(min_fit_clients=4, min_available_clients=4, fraction_evaluate=0),
                     secure_agg={"timeout_s": 5.0})
    assert "straggler" in h.rounds[0]["fit_failures"]["client_3"]
    assert h.rounds[0]["secure_agg"]["survivors"] == 3
    # released from round 1's aggregation, it is back in time for round 2
    assert h.rounds[1]["fit_results"] == 4 and h.rounds[1]["secure_agg"]["survivors"] == 4


def test_a_server_with_too_few_clients_for_secure_aggregation_refuses_to_start() -> None:
    """The deployed server (start_server / Server) checks the cohort at start-up too."""
    from hfl.server import Server
    from party import Party

    net = InMemoryNetwork(["server", "c1", "c2"])
    with pytest.raises(ConfigError, match=r"at least 3"):
        Server(Party("server", net.transport("server")), secure_agg=True)
    Server(Party("server", InMemoryNetwork(["server", "c1", "c2", "c3"]).transport("server")),
           secure_agg=True)  # three is enough
