"""party.fsm: the one stage guard, and the party.testing helpers that drive any machine."""

from __future__ import annotations

import enum
from typing import ClassVar

import pytest

from party.errors import LocalProtocolError, RemoteProtocolError
from party.fsm import Machine, StageError, check_table, transition
from party.testing import check_transitions, traced, uncovered


class S(enum.Enum):
    A = "a"
    B = "b"
    C = "c"
    DEAD = "dead"


class Toy(Machine[S]):
    transitions: ClassVar = {
        "go": {S.A: S.B},
        "turn[left]": {S.B: S.C},
        "turn[right]": {S.B: S.A},
        "stay": {S.A: S.A, S.B: S.B, S.C: S.C},
    }
    aborted = S.DEAD

    def __init__(self, clock=None) -> None:
        self.stage = S.A
        self.secret: bytes | None = b"k"
        self._clock = clock
        self.timings: dict[str, float] = {}

    @transition("go")
    def go(self, fail: Exception | None = None) -> str:
        if fail is not None:
            raise fail
        return "went"

    @transition("turn", lambda self, left: "left" if left else "right")
    def turn(self, left: bool) -> None:
        pass

    @transition("stay")
    def stay(self) -> None:
        pass

    def _on_abort(self, error: BaseException | None) -> None:
        self.secret = None


def test_allowed_call_advances_and_returns() -> None:
    m = Toy()
    assert m.go() == "went" and m.stage is S.B
    m.turn(True)
    assert m.stage is S.C
    m.stay()
    assert m.stage is S.C


def test_refused_call_names_method_stages_and_changes_nothing() -> None:
    m = Toy()
    m.stage = S.C
    with pytest.raises(StageError, match=r"Toy: go\(\) needs stage A, but is in C") as ei:
        m.go()
    assert isinstance(ei.value, LocalProtocolError)
    assert m.stage is S.C and m.secret == b"k"


def test_a_variant_event_is_refused_before_its_variant_is_computed() -> None:
    m = Toy()
    with pytest.raises(StageError, match=r"turn\(\) needs stage B"):
        m.turn(None)  # type: ignore[arg-type]  # the variant function never runs on it
    m.stage = S.B
    m.turn(False)
    assert m.stage is S.A


def test_remote_protocol_error_aborts_and_wipes() -> None:
    m = Toy()
    with pytest.raises(RemoteProtocolError):
        m.go(RemoteProtocolError("bad message", peer="p"))
    assert m.stage is S.DEAD and m.secret is None
    with pytest.raises(StageError, match="DEAD"):
        m.stay()


def test_other_errors_leave_the_stage() -> None:
    m = Toy()
    with pytest.raises(ValueError):
        m.go(ValueError("caller's mistake"))
    assert m.stage is S.A and m.secret == b"k"


def test_injected_clock_times_each_event() -> None:
    ticks = iter([1.0, 3.5])
    m = Toy(clock=lambda: next(ticks))
    m.go()
    assert m.timings == {"go": 2.5}
    assert Toy().timings == {}  # no clock: the machine never measures


def test_check_transitions_drives_every_pair() -> None:
    calls = {"go": lambda m: m.go(), "turn[left]": lambda m: m.turn(True),
             "turn[right]": lambda m: m.turn(False), "stay": lambda m: m.stay()}
    assert check_transitions(Toy, calls, S) == 4 * len(S)


def test_check_transitions_finds_a_guard_that_lets_a_call_through() -> None:
    class Leaky(Toy):
        def stay(self) -> None:  # not guarded
            pass

    calls = {"go": lambda m: m.go(), "turn[left]": lambda m: m.turn(True),
             "turn[right]": lambda m: m.turn(False), "stay": lambda m: m.stay()}
    with pytest.raises(AssertionError, match="stay in stage DEAD was not refused"):
        check_transitions(Leaky, calls, S)
    with pytest.raises(AssertionError, match="calls"):
        check_transitions(Toy, {"go": calls["go"]}, S)


def test_check_transitions_finds_a_wrong_next_stage() -> None:
    class Wrong(Toy):
        @transition("go")
        def go(self, fail: Exception | None = None) -> str:
            return "went"

        def _advance(self, event: str, nxt: S) -> None:
            self.stage = S.C  # ignores the table

    calls = {"go": lambda m: m.go(), "turn[left]": lambda m: m.turn(True),
             "turn[right]": lambda m: m.turn(False), "stay": lambda m: m.stay()}
    with pytest.raises(AssertionError, match="the table says"):
        check_transitions(Wrong, calls, S)


def test_traced_run_and_uncovered_pairs() -> None:
    m = Toy()
    with traced(m) as trace:
        m.go()
        m.turn(False)
        m.go()
        m.turn(True)
    assert trace[0] == ("go", S.A, S.B)
    assert uncovered(Toy.transitions, trace) == ["stay in A", "stay in B", "stay in C"]
    with pytest.raises(AssertionError, match="not in the table"):
        uncovered(Toy.transitions, [("go", S.B, S.C)])
    assert m._trace is None  # the block ended


def test_check_table_refuses_foreign_stages_and_dead_events() -> None:
    class Other(enum.Enum):
        X = 1

    with pytest.raises(ValueError, match="not S stages"):
        check_table({"go": {S.A: Other.X}}, S)
    with pytest.raises(ValueError, match="no stage"):
        check_table({"go": {}}, S)
