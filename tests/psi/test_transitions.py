"""psi.protocol's transition table (party.fsm), pair by pair and as real runs take it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from party.errors import LocalProtocolError, RemoteProtocolError
from party.fsm import StageError
from party.testing import check_transitions, traced, uncovered
from psi.group import hash_to_group
from psi.messages import Points
from psi.protocol import TRANSITIONS, PsiConfig, PsiSession, Send, Stage
from tests.psi.helpers import Crash, make_sessions, pump

# a, b, c in mode "one" with receiver b: a learns nothing, so a finishes without a result
# stream of its own (what own_chunks[done] needs once its expected streams are cleared)
CFG = PsiConfig(mode="one", receiver="b")
PARTIES = ["a", "b", "c"]
_PEERS = {p: PsiSession(p, PARTIES, [p.encode()], CFG) for p in ("b", "c")}
HELLOS = {p: s.hello()[0].msg for p, s in _PEERS.items()}


def _make() -> PsiSession:
    return PsiSession("a", PARTIES, [b"a"], CFG)


def _hellos_in(m: PsiSession) -> None:
    """Feed b's and c's hellos (as in stage HELLO), then put back the stage the test set."""
    forced = m.stage
    m.stage = Stage.HELLO
    for p in ("b", "c"):
        m.on_hello(p, HELLOS[p])
    m.stage = forced


def _point(m: PsiSession) -> bytes:
    return hash_to_group([b"x"], m.dst)


def _own_done(m: PsiSession) -> None:
    _hellos_in(m)
    m._expect.clear()  # as after a resume in which every stream a waits for was saved
    list(m.own_chunks())


def _receive_last(m: PsiSession) -> None:
    _hellos_in(m)
    m.receive("c", "chain:c:1", Points(0, True, _point(m)))
    list(m.receive("c", "chain:b:2", Points(0, True, _point(m))))


CALLS: dict[str, Any] = {
    "hello": lambda m: m.hello(),
    "on_hello[more]": lambda m: m.on_hello("b", HELLOS["b"]),
    "on_hello[last]": lambda m: (m.on_hello("b", HELLOS["b"]), m.on_hello("c", HELLOS["c"])),
    "own_chunks[send]": lambda m: (_hellos_in(m), list(m.own_chunks())),
    "own_chunks[done]": _own_done,
    "receive[more]": lambda m: (_hellos_in(m), m.receive("c", "chain:c:1", Points(0, True, _point(m)))),
    "receive[last]": _receive_last,
}


def test_every_pair() -> None:
    n = check_transitions(_make, CALLS, Stage)
    assert n == len(TRANSITIONS) * len(Stage)


def test_the_table_has_no_loose_ends() -> None:
    for event, moves in TRANSITIONS.items():
        assert moves and all(isinstance(a, Stage) and isinstance(b, Stage) for a, b in moves.items()), event
    assert not any(Stage.ABORTED in moves or Stage.DONE in moves for moves in TRANSITIONS.values())


def test_real_runs_take_every_transition(tmp_path: Path) -> None:
    sets = {"a": [b"x", b"y"], "b": [b"x", b"z"], "c": [b"x", b"y", b"w"]}
    sess = make_sessions(sets, PsiConfig(chunk_points=1))
    with traced(*sess.values()) as trace:
        res = pump(sess)
    assert all(r.size == 1 for r in res.values())
    # own_chunks[done]: a resumed run whose leader saved every stream it waits for
    two = {"a": [f"id{i}".encode() for i in range(10)], "b": [f"id{i}".encode() for i in range(5, 15)]}
    dirs = {n: tmp_path / n for n in two}
    with pytest.raises(Crash):
        pump(make_sessions(two, checkpoints=dirs), crash_when=lambda src, dst, step: step == "result")
    resumed = make_sessions(two, checkpoints=dirs)
    with traced(*resumed.values()) as trace2:
        res2 = pump(resumed)
    assert ("own_chunks[done]", Stage.READY, Stage.DONE) in trace2
    assert res2["a"].size == res2["b"].size == 5
    assert uncovered(TRANSITIONS, trace + trace2) == []


def test_a_peers_illegal_message_aborts_the_session_and_forgets_its_scalar() -> None:
    def tamper(src: str, s: Send) -> object:
        if src == "b" and s.step.startswith("chain:") and isinstance(s.msg, Points) and s.msg.count:
            return dataclasses.replace(s.msg, data=bytes(32) * s.msg.count)
        return s.msg

    sess = make_sessions({"a": [b"x", b"y"], "b": [b"x", b"z"]})
    with pytest.raises(RemoteProtocolError, match="refused before multiplying"):
        pump(sess, tamper=tamper)
    assert sess["a"].stage is Stage.ABORTED and sess["b"].stage is Stage.RUNNING
    assert sess["a"]._scalar == bytes(32) and sess["a"]._buffers == {}
    with pytest.raises(StageError, match=r"PSI a: receive\(\) needs stage RUNNING, but is in ABORTED"):
        sess["a"].receive("b", "chain:b:1", Points(0, True, b""))
    with pytest.raises(LocalProtocolError, match="aborted"):
        sess["a"].salt_proof()


def test_a_local_mistake_does_not_abort() -> None:
    m = _make()
    m.hello()
    for p in ("b", "c"):
        m.on_hello(p, HELLOS[p])
    list(m.own_chunks())
    with pytest.raises(LocalProtocolError, match="expected"):
        m.receive("b", "chain:b:1", Points(0, True, _point(m)))  # a waits for c first
    assert m.stage is Stage.RUNNING and m._scalar != bytes(32)
