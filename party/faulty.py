"""A Transport wrapper that drops, duplicates, corrupts or delays messages, or resets the link.

For tests of what a protocol does when the delivery contract of
:mod:`party.transport` is broken on purpose, one message at a time (the byte-level
faults of a real network, where the contract must hold, are
:class:`party.faultproxy.FaultProxy`'s job)::

    ft = FaultyTransport(net.transport("c2"))
    ft.drop(step="masked_input")            # c2's masked input never reaches the server
    ft.duplicate(dst="server", count=2)     # the next two messages to the server arrive twice
    ft.corrupt(step="share_keys", at=0)     # a flipped header byte: the decode must refuse it
    ft.delay(0.5, protocol="secagg")        # each secagg message waits 0.5 s (order kept)
    ft.reset_after(3)                       # after 3 more messages the link dies (as a crash)
    party = Party("c2", ft)

Faults act on what this side *sends*; each rule matches on the destination and the
tag's protocol, session, round and step (None: any), or a predicate, and applies to
the first ``count`` matching messages (None: all of them). What was done is in
:attr:`FaultyTransport.applied`. With no fault armed the wrapper is transparent:
``party.conformance.check_transport`` passes over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Literal

from party.errors import ClosedTransport
from party.transport import Tag, Transport, TransportStats

Kind = Literal["drop", "duplicate", "corrupt", "delay"]


@dataclasses.dataclass
class Rule:
    """One armed fault: which messages it hits and how many are left."""

    kind: Kind
    dst: str | None = None
    protocol: str | None = None
    session: str | None = None
    round: int | None = None
    step: str | None = None
    when: Callable[[str, Tag], bool] | None = None
    count: int | None = 1
    seconds: float = 0.0
    at: int = -1  # corrupt: the byte flipped

    def matches(self, dst: str, tag: Tag) -> bool:
        return ((self.dst is None or dst == self.dst)
                and (self.protocol is None or tag.protocol == self.protocol)
                and (self.session is None or tag.session == self.session)
                and (self.round is None or tag.round == self.round)
                and (self.step is None or tag.step == self.step)
                and (self.when is None or self.when(dst, tag)))


class FaultyTransport:
    """Wraps ``inner`` (any :class:`~party.transport.Transport`) and applies armed faults."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.rules: list[Rule] = []
        #: (fault, dst, tag) of every fault applied, in order
        self.applied: list[tuple[str, str, Tag]] = []
        self._lock = threading.Lock()
        self._reset_in: int | None = None

    # -- arming ------------------------------------------------------------------------------
    def _arm(self, kind: Kind, *, dst: str | None, protocol: str | None, session: str | None,
             round: int | None, step: str | None, when: Callable[[str, Tag], bool] | None,
             count: int | None, seconds: float = 0.0, at: int = -1) -> Rule:
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None (every match), got {count}")
        rule = Rule(kind, dst, protocol, session, round, step, when, count, seconds, at)
        with self._lock:
            self.rules.append(rule)
        return rule

    def drop(self, *, dst: str | None = None, protocol: str | None = None,
             session: str | None = None, round: int | None = None, step: str | None = None,
             when: Callable[[str, Tag], bool] | None = None, count: int | None = 1) -> Rule:
        """Matching messages vanish (the sender is not told)."""
        return self._arm("drop", dst=dst, protocol=protocol, session=session, round=round,
                         step=step, when=when, count=count)

    def duplicate(self, *, dst: str | None = None, protocol: str | None = None,
                  session: str | None = None, round: int | None = None, step: str | None = None,
                  when: Callable[[str, Tag], bool] | None = None, count: int | None = 1) -> Rule:
        """Matching messages are delivered twice (a replay)."""
        return self._arm("duplicate", dst=dst, protocol=protocol, session=session, round=round,
                         step=step, when=when, count=count)

    def corrupt(self, *, at: int = -1, dst: str | None = None, protocol: str | None = None,
                session: str | None = None, round: int | None = None, step: str | None = None,
                when: Callable[[str, Tag], bool] | None = None, count: int | None = 1) -> Rule:
        """Matching messages arrive with byte ``at`` flipped (default the last: inside the
        payload's data; 0: the codec's header, which the receiver's decode must refuse)."""
        return self._arm("corrupt", dst=dst, protocol=protocol, session=session, round=round,
                         step=step, when=when, count=count, at=at)

    def delay(self, seconds: float, *, dst: str | None = None, protocol: str | None = None,
              session: str | None = None, round: int | None = None, step: str | None = None,
              when: Callable[[str, Tag], bool] | None = None, count: int | None = None) -> Rule:
        """Each matching send waits ``seconds`` first (on the sender's thread: order is kept)."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0 s, got {seconds}")
        return self._arm("delay", dst=dst, protocol=protocol, session=session, round=round,
                         step=step, when=when, count=count, seconds=seconds)

    def reset_after(self, messages: int) -> None:
        """After ``messages`` more sends, the link dies as in a crash: the inner transport
        is closed (peers awaiting this party get PartyUnavailable at once; this side's
        later calls raise ClosedTransport)."""
        if messages < 0:
            raise ValueError(f"messages must be >= 0, got {messages}")
        with self._lock:
            self._reset_in = messages
        if messages == 0:
            self._reset()

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self.rules.clear()
            self._reset_in = None

    # -- Transport ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def peers(self) -> list[str]:
        return self.inner.peers

    @property
    def stats(self) -> TransportStats:
        return self.inner.stats

    @property
    def incarnation(self) -> int:
        return self.inner.incarnation

    def peer_incarnation(self, name: str) -> int | None:
        return self.inner.peer_incarnation(name)

    def wait_peer(self, name: str, *, timeout_s: float, other_than: int | None = None) -> int:
        return self.inner.wait_peer(name, timeout_s=timeout_s, other_than=other_than)

    def abort(self, session: str, reason: str) -> None:
        self.inner.abort(session, reason)

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        return self.inner.recv(src, tag, timeout_s=timeout_s)

    def close(self) -> None:
        self.inner.close()

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        kinds = self._take(dst, tag)
        for kind, seconds in kinds:
            self.applied.append((kind, dst, tag))
            if kind == "delay":
                time.sleep(seconds)
        names = {k for k, _ in kinds}
        if "drop" in names:
            self._count_reset()
            return
        for kind, at in kinds:
            if kind == "corrupt":
                payload = bytearray(payload)
                payload[int(at)] ^= 0xFF
        self.inner.send(dst, tag, payload)
        if "duplicate" in names:
            self.inner.send(dst, tag, payload)
        self._count_reset()

    def _take(self, dst: str, tag: Tag) -> list[tuple[Kind, float]]:
        """The faults that hit this message (each rule's count decremented); for a corrupt
        fault the number is the byte offset, for a delay the seconds."""
        out: list[tuple[Kind, float]] = []
        with self._lock:
            for r in list(self.rules):
                if not r.matches(dst, tag):
                    continue
                out.append((r.kind, float(r.at) if r.kind == "corrupt" else r.seconds))
                if r.count is not None:
                    r.count -= 1
                    if r.count == 0:
                        self.rules.remove(r)
        return out

    def _count_reset(self) -> None:
        with self._lock:
            if self._reset_in is None:
                return
            self._reset_in -= 1
            due = self._reset_in <= 0
        if due:
            self._reset()

    def _reset(self) -> None:
        with self._lock:
            self._reset_in = None
        self.applied.append(("reset", "*", Tag("reset")))
        with contextlib.suppress(ClosedTransport):
            self.inner.close()


__all__ = ["FaultyTransport", "Rule"]
