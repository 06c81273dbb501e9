"""The runners over a Party: in memory for several configurations, and once over gRPC."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from party import InMemoryNetwork, Party, Tag
from party.errors import QuorumLost
from party.testing import run_parties
from secure_agg import (
    ClientOutcome,
    SecAggClient,
    SecAggParams,
    ShareDecryptionError,
    run_client,
    run_server,
    secure_sum,
)
from secure_agg.messages import AdvertiseKeys, Excluded, ForwardedShares

D = 300


def _fed(
    n: int, params: SecAggParams, *, session: str = "run", round: int = 0,
    server_timeout: float = 5.0, client: Callable[..., Any] | None = None, seed: int = 0,
) -> tuple[dict[str, Callable[[Party], Any]], dict[str, np.ndarray], dict[str, int]]:
    rng = np.random.default_rng(seed)
    xs = {f"c{i}": rng.normal(0, 0.1, D).astype(np.float32) for i in range(n)}
    ws = {u: int(rng.integers(1, 500)) for u in xs}
    fns: dict[str, Callable[[Party], Any]] = {
        "server": lambda p: run_server(p, list(xs), params=params, session=session, round=round,
                                       timeout_s=server_timeout)
    }
    for u in xs:
        def fn(p: Party, u: str = u) -> Any:
            if client is not None:
                return client(p, u, xs[u], ws[u])
            return run_client(p, "server", xs[u], weight=ws[u], params=params, session=session,
                              round=round, timeout_s=server_timeout * 3)
        fns[u] = fn
    return fns, xs, ws


def _fedavg(xs: dict[str, np.ndarray], ws: dict[str, int], members: list[str]) -> np.ndarray:
    tot = sum(ws[u] * xs[u].astype(np.float64) for u in members)
    return np.asarray(tot) / sum(ws[u] for u in members)


@pytest.mark.parametrize(
    ("n", "mode", "neighbours"),
    [(3, "secagg", None), (8, "secagg", None), (12, "secagg+", 4), (25, "secagg+", None)],
)
def test_runner_in_memory_matches_fedavg(n: int, mode: str, neighbours: int | None) -> None:
    params = SecAggParams(num_clients=n, vector_length=D, mode=mode, neighbours=neighbours,
                          dropout_fraction=0.05)
    fns, xs, ws = _fed(n, params)
    out = run_parties(fns)
    res = out["server"]
    assert res.survivors == sorted(xs)
    np.testing.assert_allclose(res.mean, _fedavg(xs, ws, list(xs)), rtol=0, atol=params.step)
    assert all(out[u] == ClientOutcome(True, num_survivors=n) for u in xs)


def test_secure_sum_and_consecutive_rounds_use_fresh_keys() -> None:
    params = SecAggParams(num_clients=4, vector_length=D, mode="secagg")
    seen: list[bytes] = []
    lock = threading.Lock()

    def client(p: Party, u: str, x: np.ndarray, w: int) -> Any:
        outs = []
        for r in range(2):
            outs.append(run_client(p, "server", x, weight=w, params=params, session="s", round=r,
                                   timeout_s=15))
        return outs

    rng = np.random.default_rng(1)
    xs = {f"c{i}": rng.normal(size=D) for i in range(4)}
    orig_send = Party.send

    def spy(self: Party, dst: str, tag: Any, msg: Any) -> int:
        if isinstance(msg, AdvertiseKeys):
            with lock:
                seen.extend([msg.enc_public, msg.mask_public])
        return orig_send(self, dst, tag, msg)

    def server(p: Party) -> Any:
        return [secure_sum(p, list(xs), params=params, session="s", round=r, timeout_s=5)
                for r in range(2)]

    fns: dict[str, Callable[[Party], Any]] = {"server": server}
    for u, x in xs.items():
        def fn(p: Party, u: str = u, x: np.ndarray = x) -> Any:
            return client(p, u, x, 3)
        fns[u] = fn
    Party.send = spy  # type: ignore[method-assign]
    try:
        out = run_parties(fns)
    finally:
        Party.send = orig_send  # type: ignore[method-assign]
    for vec, w in out["server"]:
        assert w == 12.0
        np.testing.assert_allclose(vec / w, np.mean(list(xs.values()), axis=0), atol=params.step)
    assert len(seen) == 16 and len(set(seen)) == 16  # no key reused across rounds or clients


def _scripted(
    p: Party, u: str, x: np.ndarray, w: int, params: SecAggParams, net: InMemoryNetwork, *,
    stop_before: str, corrupt_y: bool = False,
) -> Any:
    """A hand-driven client that goes silent (disconnects) before ``stop_before``."""
    sm = SecAggClient(u, params=params, session="run")
    tag = Tag("secagg", "run", 0, "")
    if stop_before == "advertise_keys":
        net.disconnect(u)
        return None
    from party.handshake import open_run
    from secure_agg.runner import _hs_info, _hs_session

    open_run(p, ["server"], protocol="secagg", session=_hs_session("run", 0),
             info=_hs_info(params), timeout_s=10)  # the round's handshake, as run_client does
    p.send("server", tag.at("advertise_keys"), sm.advertise_keys())
    if stop_before == "share_keys":
        return None  # silent but still connected: the server must time out
    pk = p.recv("server", tag.at("public_keys"), timeout_s=10)
    p.send("server", tag.at("share_keys"), sm.share_keys(pk))
    fwd = p.recv("server", tag.at("forwarded_shares"), timeout_s=10)
    if stop_before == "masked_input":
        net.disconnect(u)
        return None
    m = sm.masked_input(fwd, x, weight=w)
    if corrupt_y:
        m = dataclasses.replace(m, y=m.y[:10].copy())
    p.send("server", tag.at("masked_input"), m)
    return p.recv("server", tag.at("unmask_request"), timeout_s=10)


def test_disconnected_and_silent_clients_are_dropouts() -> None:
    params = SecAggParams(num_clients=10, vector_length=D, mode="secagg", dropout_fraction=0.3)
    net = InMemoryNetwork(["server", *[f"c{i}" for i in range(10)]])
    script = {"c3": "advertise_keys", "c5": "share_keys", "c7": "masked_input"}

    def client(p: Party, u: str, x: np.ndarray, w: int) -> Any:
        if u in script:
            return _scripted(p, u, x, w, params, net, stop_before=script[u])
        return run_client(p, "server", x, weight=w, params=params, session="run", timeout_s=10)

    fns, xs, ws = _fed(10, params, client=client, server_timeout=1.0)
    out = run_parties(fns, network=net)
    res = out["server"]
    assert res.dropped == {"c3": "advertise_keys", "c5": "share_keys", "c7": "masked_input"}
    alive = [u for u in xs if u not in script]
    np.testing.assert_allclose(res.mean, _fedavg(xs, ws, alive), atol=params.step)


def test_client_excluded_for_a_bad_vector_gets_told_and_the_rest_finish() -> None:
    params = SecAggParams(num_clients=6, vector_length=D, mode="secagg")
    net = InMemoryNetwork(["server", *[f"c{i}" for i in range(6)]])

    def client(p: Party, u: str, x: np.ndarray, w: int) -> Any:
        if u == "c2":
            return _scripted(p, u, x, w, params, net, stop_before="", corrupt_y=True)
        return run_client(p, "server", x, weight=w, params=params, session="run", timeout_s=10)

    fns, xs, ws = _fed(6, params, client=client)
    out = run_parties(fns, network=net)
    res = out["server"]
    assert isinstance(out["c2"], Excluded) and "masked vector" in out["c2"].reason
    assert out["c0"].completed and res.dropped == {"c2": "masked_input"}
    alive = [u for u in xs if u != "c2"]
    np.testing.assert_allclose(res.mean, _fedavg(xs, ws, alive), atol=params.step)


@pytest.mark.parametrize("stage", ["advertise_keys", "masked_input"])
def test_below_threshold_every_client_learns_the_round_was_aborted(stage: str) -> None:
    params = SecAggParams(num_clients=5, vector_length=D, mode="secagg")
    net = InMemoryNetwork(["server", *[f"c{i}" for i in range(5)]])

    def client(p: Party, u: str, x: np.ndarray, w: int) -> Any:
        if u in ("c0", "c1", "c2"):
            return _scripted(p, u, x, w, params, net, stop_before=stage)
        try:
            run_client(p, "server", x, weight=w, params=params, session="run", timeout_s=10)
        except QuorumLost as e:
            return str(e)
        return "completed?!"

    fns, _xs, _ws = _fed(5, params, client=client, server_timeout=2.0)
    box: dict[str, Any] = {}

    def server(p: Party) -> Any:
        try:
            return fns_server(p)
        except QuorumLost as e:
            box["err"] = e
            return None

    fns_server = fns["server"]
    fns["server"] = server
    out = run_parties(fns, network=net)
    assert f"at {stage}" in str(box["err"])
    for u in ("c3", "c4"):
        assert "server aborted" in out[u] and "fewer than" in out[u]


@pytest.mark.grpc
def test_runner_over_grpc_with_a_dropout() -> None:
    params = SecAggParams(num_clients=5, vector_length=D, mode="secagg+", dropout_fraction=0.2)

    def client(p: Party, u: str, x: np.ndarray, w: int) -> Any:
        if u == "c4":
            return None  # never shows up
        return run_client(p, "server", x, weight=w, params=params, session="grpc", timeout_s=30)

    fns, xs, ws = _fed(5, params, session="grpc", client=client, server_timeout=3.0)
    out = run_parties(fns, transport="grpc")
    res = out["server"]
    assert res.dropped == {"c4": "advertise_keys"}
    alive = ["c0", "c1", "c2", "c3"]
    np.testing.assert_allclose(res.mean, _fedavg(xs, ws, alive), atol=params.step)
    assert all(out[u].completed for u in alive)


class _TamperingServer(Party):
    """A server whose relay flips one bit of the shares forwarded to ``victim``."""

    victim = "c1"

    def send(self, dst: str, tag: Tag, msg: Any) -> int:
        if isinstance(msg, ForwardedShares) and dst == self.victim:
            cts = msg.ciphertexts.copy()
            cts[0, 40] ^= 1
            msg = dataclasses.replace(msg, ciphertexts=cts)
        return super().send(dst, tag, msg)


def test_client_that_detects_tampering_aborts_and_tells_the_server_at_once() -> None:
    params = SecAggParams(num_clients=6, vector_length=D, mode="secagg")

    def client(p: Party, u: str, x: np.ndarray, w: int) -> Any:
        try:
            return run_client(p, "server", x, weight=w, params=params, session="run", timeout_s=60)
        except ShareDecryptionError as e:
            return e

    fns, xs, ws = _fed(6, params, client=client, server_timeout=30.0)
    inner = fns["server"]
    fns["server"] = lambda p: inner(_TamperingServer(p.name, p.transport))
    t0 = time.monotonic()
    out = run_parties(fns)
    assert time.monotonic() - t0 < 15  # no 30 s wait for the client that quit
    assert isinstance(out["c1"], ShareDecryptionError)
    res = out["server"]
    assert res.dropped == {"c1": "masked_input"}
    alive = [u for u in xs if u != "c1"]
    np.testing.assert_allclose(res.mean, _fedavg(xs, ws, alive), atol=params.step)


def test_run_client_refuses_bad_input_before_sending_anything() -> None:
    params = SecAggParams(num_clients=3, vector_length=D, mode="secagg")
    net = InMemoryNetwork(["server", "c0"])
    p = Party("c0", net.transport("c0"))
    with pytest.raises(ValueError, match=r"shape \(300,\)"):
        run_client(p, "server", np.zeros(D - 1), params=params, session="s")
    with pytest.raises(ValueError, match="max_weight"):
        run_client(p, "server", np.zeros(D), weight=2.5, params=params, session="s")
    assert p.transport.stats.messages_sent == 0


def test_release_client_stops_a_waiting_client_at_once() -> None:
    """secure_agg.release_client (what hfl.secure uses): a client the server will not take
    into a round is told wherever it waits, and reveals nothing."""
    from secure_agg import STEPS, handshake_session, release_client, round_tag

    assert round_tag("s", 2, "public_keys") == Tag("secagg", "s", 2, "public_keys")
    assert handshake_session("s", 2) == "s.r2" and STEPS[1] == "public_keys"
    params = SecAggParams(num_clients=3, vector_length=D, mode="secagg")
    t0 = time.monotonic()
    out = run_parties({
        "server": lambda p: release_client(p, "c0", session="s", round=2, reason="too late"),
        "c0": lambda p: run_client(p, "server", np.zeros(D), params=params, session="s",
                                   round=2, timeout_s=60),
    })
    assert isinstance(out["c0"], ClientOutcome) and not out["c0"].completed
    assert time.monotonic() - t0 < 30  # not the 60 s timeout
