"""One stage guard for every sans-I/O protocol machine.

A protocol side is a class with a ``stage`` (an :class:`enum.Enum`) and a
transition table, data rather than ``if``s (h11's ``EVENT_TRIGGERED_TRANSITIONS``)::

    TRANSITIONS: Table[Stage] = {
        "advertise_keys": {Stage.IDLE: Stage.ADVERTISED},
        "on_masked_forward": {Stage.FORWARD_TRAIN: Stage.FORWARD_DONE,
                              Stage.FORWARD_EVAL: Stage.IDLE},
    }

Each event maps every stage it may happen in to the one stage it leaves, so every
(event, stage) pair is decided by the table: refused, or exactly one next stage.
An event whose outcome depends on an argument (a training or an evaluation
forward pass) is two events, ``"forward[train]"`` and ``"forward[eval]"``.

:func:`transition` decorates a method of a :class:`Machine`:

1. it checks the stage: a call the table does not allow raises :class:`StageError`
   (a :class:`LocalProtocolError` naming the machine, the event, the stages that
   allow it and the current one) before the method runs;
2. it runs the method; if the method raises one of ``abort_on`` (by default
   :class:`RemoteProtocolError`: the peer sent something illegal), the machine
   enters its ``aborted`` stage (if it has one) and :meth:`Machine._on_abort`
   runs (wipe secrets) before the error propagates; any other error leaves the
   stage as it was (a bad argument is the caller's mistake, not the peer's);
3. on success it advances to the table's next stage.

``party.testing.check_transitions`` drives every (event, stage) pair of any machine
and ``party.testing.traced`` records the transitions a real run takes, so a test
can assert that the run covered the whole table.

A new protocol side: a ``Stage`` enum, its table, a ``Machine`` subclass whose step
methods (pure: messages in, messages out, no I/O, no clock) carry ``@transition``, a
thin runner that moves the messages over a ``party.Party``, and two tests:
``check_transitions`` (every pair) and a traced run with ``uncovered(...) == []``.
Users today: ``secure_agg.client``/``server``, ``he.endpoint`` (``vfl.he.layer``,
``ftl.protocol``), ``vfl.session`` and ``psi.protocol``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from party.errors import LocalProtocolError, RemoteProtocolError

S = TypeVar("S", bound=enum.Enum)
M = TypeVar("M", bound="Machine[Any]")
P = ParamSpec("P")
R = TypeVar("R")

#: event -> {stage it may happen in: stage it leaves}
Table = Mapping[str, Mapping[S, S]]


class StageError(LocalProtocolError):
    """A method was called in a stage its transition table does not allow."""

    def __init__(self, label: str, event: str, stage: enum.Enum, allowed: list[enum.Enum]) -> None:
        names = " or ".join(sorted({s.name for s in allowed})) or "(none)"
        super().__init__(f"{label}: {_display(event)} needs stage {names}, "
                         f"but is in {stage.name}")
        self.event, self.stage, self.allowed = event, stage, allowed


def _display(event: str) -> str:
    method, _, variant = event.partition("[")
    return f"{method}()" + (f" ({variant.rstrip(']')})" if variant else "")


def events_of(table: Table[Any], method: str) -> list[str]:
    """The table's events for ``method``: ``method`` itself and its ``method[variant]`` events."""
    return [e for e in table if e == method or e.startswith(method + "[")]


class Machine(Generic[S]):
    """Base of a guarded protocol side: ``stage``, ``transitions`` and what an abort does.

    Subclasses set ``transitions`` (class attribute), set ``self.stage`` in
    ``__init__`` and may set ``aborted`` (the stage a remote protocol error leaves),
    ``abort_on`` and :meth:`_label`. When ``_clock`` is set (the runner passes
    ``time.perf_counter``) each event's duration goes into ``timings``; the machine
    itself never reads the clock.
    """

    transitions: ClassVar[Table[Any]]
    aborted: ClassVar[Any] = None
    abort_on: ClassVar[tuple[type[BaseException], ...]] = (RemoteProtocolError,)
    stage: S
    _clock: Callable[[], float] | None = None
    _trace: list[tuple[str, Any, Any]] | None = None

    def _label(self) -> str:
        return type(self).__name__

    def _on_abort(self, error: BaseException | None) -> None:
        """Forget secrets and half-done state when the machine aborts (default: nothing);
        ``error`` is what aborted it (None: the owner called abort)."""

    def allows(self, event: str) -> bool:
        """Whether ``event`` may happen in the current stage."""
        return self.stage in self.transitions[event]

    def _guard(self, event: str) -> S:
        """The stage ``event`` leaves from here; :class:`StageError` if it may not happen."""
        nxt = self.transitions[event].get(self.stage)
        if nxt is None:
            raise StageError(self._label(), event, self.stage, list(self.transitions[event]))
        return nxt  # type: ignore[no-any-return]

    def _guard_method(self, method: str) -> None:
        """Refuse a method none of whose events may happen here (before its variant is known)."""
        events = events_of(self.transitions, method)
        if not any(self.stage in self.transitions[e] for e in events):
            allowed = [s for e in events for s in self.transitions[e]]
            raise StageError(self._label(), method, self.stage, allowed)

    def _advance(self, event: str, nxt: S) -> None:
        if self._trace is not None:
            self._trace.append((event, self.stage, nxt))
        self.stage = nxt

    def _abort(self, error: BaseException | None = None) -> None:
        """Enter the aborted stage (if any) and forget secrets; later calls are refused."""
        if self.aborted is not None:
            self.stage = self.aborted
        self._on_abort(error)


def transition(
    event: str, variant: Callable[..., str] | None = None, *, remote: bool = False
) -> Callable[[Callable[Concatenate[M, P], R]], Callable[Concatenate[M, P], R]]:
    """Guard a method of a :class:`Machine` by the table's entry for ``event``.

    ``variant(self, *args, **kwargs)`` names the variant for an argument-dependent
    event: the event is then ``f"{event}[{variant}]"``. It is called only after the
    stage allows some variant, so a call in the wrong stage is refused first. With
    ``remote=True`` the variant comes from a peer's message (a command): a variant the
    stage does not allow is the peer's fault, a :class:`RemoteProtocolError` (and aborts).
    """

    def deco(fn: Callable[Concatenate[M, P], R]) -> Callable[Concatenate[M, P], R]:
        @functools.wraps(fn)
        def guarded(self: M, *args: P.args, **kwargs: P.kwargs) -> R:
            if variant is None:
                ev = event
            else:
                self._guard_method(event)
                ev = f"{event}[{variant(self, *args, **kwargs)}]"
                if remote and not (ev in self.transitions and self.allows(ev)):
                    err = RemoteProtocolError(f"{self._label()}: the peer asks for "
                                              f"{_display(ev)} in stage {self.stage.name}")
                    self._abort(err)
                    raise err
            nxt = self._guard(ev)
            t0 = self._clock() if self._clock is not None else 0.0
            try:
                out = fn(self, *args, **kwargs)
            except self.abort_on as e:
                self._abort(e)
                raise
            if self._clock is not None:
                self.timings[ev] = self.timings.get(ev, 0.0) + self._clock() - t0  # type: ignore[attr-defined]
            self._advance(ev, nxt)
            return out

        return guarded

    return deco


def check_table(table: Table[Any], stages: type[enum.Enum]) -> None:
    """Refuse a malformed table: stages of another enum, or an event allowed nowhere."""
    for event, moves in table.items():
        if not moves:
            raise ValueError(f"event {event!r} is allowed in no stage")
        for a, b in moves.items():
            if not isinstance(a, stages) or not isinstance(b, stages):
                raise ValueError(f"event {event!r}: {a!r} -> {b!r} are not {stages.__name__} stages")


__all__ = ["Machine", "StageError", "Table", "check_table", "events_of", "transition"]
