"""party.handshake: the confirmed run handshake (machine without a network, runner in memory and gRPC)."""

from __future__ import annotations

import threading
import time

import pytest

from party import InMemoryNetwork, LocalProtocolError, Party, PartyTimeout, RemoteProtocolError
from party.handshake import Handshake, RunMismatch, open_run
from party.testing import run_parties


def _pair(info_a: dict, info_b: dict, extra_a: bytes = b"", extra_b: bytes = b"") -> tuple[Handshake, Handshake]:
    a = Handshake("a", ["a", "b"], protocol="psi", session="s", info=info_a, incarnation=1, extra=extra_a)
    b = Handshake("b", ["a", "b"], protocol="psi", session="s", info=info_b, incarnation=2, extra=extra_b)
    return a, b


def test_machine_agrees_on_one_run_id() -> None:
    a, b = _pair({"mode": "rows", "k": [1, 2]}, {"k": [1, 2], "mode": "rows"})
    a.on_hello("b", b.hello)
    b.on_hello("a", a.hello)
    a.on_confirm("b", b.confirm())
    b.on_confirm("a", a.confirm())
    ra, rb = a.result(), b.result()
    assert ra.run_id == rb.run_id and ra.transcript == rb.transcript
    assert ra.incarnations == {"a": 1, "b": 2}
    a2, b2 = _pair({"mode": "rows"}, {"mode": "rows"})  # a new run: new nonces, new id
    a2.on_hello("b", b2.hello)
    assert a2.transcript != ra.transcript


def test_machine_names_the_setting_that_differs() -> None:
    a, b = _pair({"mode": "rows", "chunk": 10}, {"mode": "cardinality", "chunk": 10})
    with pytest.raises(RunMismatch, match=r"info\.mode.*'rows'.*'cardinality'") as ei:
        a.on_hello("b", b.hello)
    assert ei.value.peer == "b"


def test_machine_refuses_a_transcript_bound_to_another_secret() -> None:
    """PSI binds its session salt: parties with different salts never start a run."""
    a, b = _pair({}, {}, extra_a=b"salt 1", extra_b=b"salt 2")
    a.on_hello("b", b.hello)
    b.on_hello("a", a.hello)
    with pytest.raises(RunMismatch, match="transcript of b differs"):
        a.on_confirm("b", b.confirm())


def test_machine_refuses_strangers_and_early_transcripts() -> None:
    a, b = _pair({}, {})
    with pytest.raises(RemoteProtocolError, match="not a party of this run"):
        a.on_hello("mallory", b.hello)
    with pytest.raises(LocalProtocolError, match="transcript before"):
        _ = a.transcript


@pytest.mark.parametrize("transport", ["inmemory", "grpc"])
def test_open_run_same_id_both_sides_and_mismatch_is_an_error_at_both(transport: str) -> None:
    res = run_parties({n: (lambda p: open_run(p, protocol="demo", session="s", info={"v": 1}, timeout_s=20))
                       for n in ("a", "b", "c")}, transport=transport)
    assert len({r.run_id for r in res.values()}) == 1

    def party(v: int):
        def f(p: Party) -> object:
            try:
                return open_run(p, protocol="demo", session="s2", info={"v": v}, timeout_s=10)
            except RunMismatch as e:
                return e
        return f

    res = run_parties({"a": party(1), "b": party(2)}, transport=transport)
    assert all(isinstance(r, RunMismatch) for r in res.values())
    assert "info.v" in str(res["a"]) and "'b'" in repr(res["a"].peer)


def test_a_peer_that_restarts_during_the_handshake_is_waited_for() -> None:
    net = InMemoryNetwork(["a", "b"])
    pa = Party("a", net.transport("a"))
    out: dict[str, object] = {}

    def a() -> None:
        out["a"] = open_run(pa, protocol="demo", session="s", timeout_s=20)

    th = threading.Thread(target=a)
    th.start()
    time.sleep(0.3)
    net.disconnect("b", "killed")  # b dies before it ever answered (a's hello is lost with it)
    time.sleep(0.3)
    pb = Party("b", net.transport("b"))  # its new incarnation starts the run
    out["b"] = open_run(pb, protocol="demo", session="s", timeout_s=20)
    th.join(20)
    ra, rb = out["a"], out["b"]
    assert ra.run_id == rb.run_id and ra.attempts == 2  # type: ignore[attr-defined]
    # nothing left over for a later run on the same session
    with pytest.raises(PartyTimeout):
        pb.recv("a", __import__("party").Tag("run", "s", 0, "demo:hello"), timeout_s=0.2)


def test_start_order_is_free() -> None:
    def late(p: Party) -> object:
        time.sleep(1.0)
        return open_run(p, protocol="demo", session="s", timeout_s=20)

    res = run_parties({"a": lambda p: open_run(p, protocol="demo", session="s", timeout_s=20), "b": late})
    assert res["a"].run_id == res["b"].run_id


def test_star_handshake_leaves_out_the_silent_the_late_and_the_disagreeing() -> None:
    from party.handshake import RunExcluded, open_star

    net = InMemoryNetwork(["hub", "a", "b", "late", "odd", "dead"])
    parties = {n: Party(n, net.transport(n)) for n in net.names}
    out: dict[str, object] = {}

    def member(n: str, info: dict, delay: float = 0.0) -> None:
        time.sleep(delay)
        try:
            out[n] = open_run(parties[n], ["hub"], protocol="sa", session="r1", info=info,
                              timeout_s=10)
        except Exception as e:
            out[n] = e

    ths = [threading.Thread(target=member, args=a) for a in
           [("a", {"v": 1}), ("b", {"v": 1}), ("late", {"v": 1}, 2.0), ("odd", {"v": 2})]]
    for t in ths:
        t.start()
    t0 = time.monotonic()
    got = open_star(parties["hub"], ["a", "b", "late", "odd", "dead"], protocol="sa",
                    session="r1", info={"v": 1}, timeout_s=1.0)
    assert time.monotonic() - t0 < 3  # one shared deadline, not one per member
    for t in ths:
        t.join(15)
    assert sorted(got) == ["a", "b"]
    assert got["a"].transcript == out["a"].transcript  # type: ignore[attr-defined]
    assert isinstance(out["late"], RunExcluded)
    assert isinstance(out["odd"], (RunMismatch, RunExcluded))
