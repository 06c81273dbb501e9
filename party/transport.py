"""The Transport protocol: named parties exchanging tagged byte payloads.

A :class:`Tag` names one message slot: (protocol, session, round, step). Runs of
different protocols, sessions and rounds never mix, because ``recv`` waits for an
exact (src, tag); messages that arrive for a tag nobody awaits yet are buffered,
in order, per (src, tag).

:class:`Transport` moves bytes; :class:`party.Party` adds the codec and types.

The delivery contract (both transports; tested by ``tests/party/test_delivery.py``)
---------------------------------------------------------------------------------
- **Incarnations.** Each transport instance of a party is one *incarnation* (a
  random 48-bit id). A restarted process is a new incarnation; a network link that
  drops and reconnects inside one process is not.
- **Per (src, dst): in order, no loss, no duplicates,** across a reconnect of
  either side's link. The sender holds every message until the receiver's
  transport acknowledges it, and resends what is unacknowledged when a link comes
  back; the receiver drops what it already delivered.
- **Start order is free.** A message for a peer that is not connected is held by
  the *sender* and delivered to the next incarnation of that peer that connects.
  A message is bound to the receiver incarnation that was connected when it was
  sent; if that incarnation dies, the message is discarded with one log line
  (its run is gone; the peer's new incarnation starts a new run with a handshake,
  :mod:`party.handshake`).
- **Messages of a dead incarnation never reach a new one.** When a peer comes back
  as a new incarnation, whatever its old incarnation sent and nobody has received
  yet is discarded, with one log line.
- **Bounded hold.** What a sender holds for one destination is bounded in bytes
  (``hold_mb``, default 1024) and time (``hold_s``, default 300 s). Past the bound
  the *sender* gets :class:`PartyUnavailable` naming the peer, from ``send`` and
  from any ``recv`` awaiting that peer. Nothing is dropped silently.
- **A dead peer fails waiting receivers at once** (``PartyUnavailable``), not at
  their timeout: at once when it closes or is replaced by a new incarnation, and
  after the router's reconnect grace (default 5 s) when its link just vanished.
- **Aborts.** ``abort(session, reason)`` tells every peer that this party stopped
  a run, and why; their ``recv`` for that session (``"*"``: any) raises
  :class:`PeerAborted` at once. The router remembers an abort for a short while
  (60 s) for peers that connect after it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from party.errors import ClosedTransport, PartyTimeout, PartyUnavailable, PeerAborted


@dataclass(frozen=True, slots=True)
class Tag:
    """One message slot; runs of different protocols, sessions and rounds never mix."""

    protocol: str
    session: str = ""
    round: int = 0
    step: str = ""

    def __post_init__(self) -> None:
        if "/" in self.protocol or "/" in self.session:
            raise ValueError(f"tag protocol and session may not contain '/': {self.protocol!r}, {self.session!r}")

    def at(self, step: str) -> Tag:
        """The same slot at another step."""
        return dataclasses.replace(self, step=step)

    def with_round(self, round: int) -> Tag:
        """The same slot at another round."""
        return dataclasses.replace(self, round=round)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.session}/{self.round}/{self.step}"

    @classmethod
    def parse(cls, s: str) -> Tag:
        """Inverse of ``str(tag)``."""
        parts = s.split("/", 3)
        if len(parts) != 4 or not parts[2].lstrip("-").isdigit():
            raise ValueError(f"not a tag: {s!r}")
        return cls(parts[0], parts[1], int(parts[2]), parts[3])


@dataclass
class TransportStats:
    """Counters of one party's traffic (payload bytes, not framing)."""

    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def on_send(self, n: int) -> None:
        with self._lock:
            self.messages_sent += 1
            self.bytes_sent += n

    def on_recv(self, n: int) -> None:
        with self._lock:
            self.messages_received += 1
            self.bytes_received += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "messages_sent": self.messages_sent,
                "messages_received": self.messages_received,
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
            }


@runtime_checkable
class Transport(Protocol):
    """Moves byte payloads between named parties of one federation."""

    @property
    def name(self) -> str:
        """This party's name."""
        ...

    @property
    def peers(self) -> list[str]:
        """Names of the other parties of the federation."""
        ...

    @property
    def stats(self) -> TransportStats:
        """Traffic counters."""
        ...

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        """Queue ``payload`` for ``dst``.

        Raises:
            PartyUnavailable: ``dst`` is not in the federation, or is known to be gone.
            ClosedTransport: this transport was closed.
        """
        ...

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        """Return the next payload from ``src`` with exactly ``tag``.

        Raises:
            PartyTimeout: nothing arrived within ``timeout_s``.
            PartyUnavailable: ``src`` disconnected (raised at once, not after the timeout).
            ClosedTransport: this transport was closed.
        """
        ...

    def close(self) -> None:
        """Release resources; pending and later calls raise ClosedTransport."""
        ...

    @property
    def incarnation(self) -> int:
        """This transport instance's incarnation id (new for every process start)."""
        ...

    def peer_incarnation(self, name: str) -> int | None:
        """The incarnation of ``name`` connected now, or None."""
        ...

    def wait_peer(self, name: str, *, timeout_s: float, other_than: int | None = None) -> int:
        """Wait until ``name`` is connected (as an incarnation other than ``other_than``).

        Raises PartyTimeout if it does not connect within ``timeout_s``.
        """
        ...

    def abort(self, session: str, reason: str) -> None:
        """Tell every peer that this party stopped ``session`` (``"*"``: every run), and why."""
        ...


class Mailbox:
    """Per-(src, tag) FIFO buffers with blocking receive; shared by the transports.

    Messages for a tag nobody awaits yet stay buffered. A source marked down makes
    receivers waiting on it fail at once with PartyUnavailable (after its buffered
    messages are consumed).
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._cv = threading.Condition()
        self._queues: dict[tuple[str, Tag], deque[bytearray]] = {}
        self._down: dict[str, str] = {}
        self._closed: str | None = None
        self._fatal: BaseException | None = None
        self._aborted: dict[str, dict[str, str]] = {}  # src -> session -> reason
        self._gen: dict[str, int] = {}  # src -> number of incarnation changes seen

    def put(self, src: str, tag: Tag, payload: bytearray) -> None:
        with self._cv:
            self._queues.setdefault((src, tag), deque()).append(payload)
            self._cv.notify_all()

    def mark_down(self, src: str, reason: str) -> None:
        with self._cv:
            self._down[src] = reason
            self._cv.notify_all()

    def mark_up(self, src: str) -> None:
        with self._cv:
            self._down.pop(src, None)
            self._cv.notify_all()

    def purge(self, src: str) -> int:
        """Discard everything buffered from ``src`` (its incarnation died); returns the count.

        Its aborts are forgotten too: they belonged to the dead incarnation.
        """
        with self._cv:
            keys = [k for k in self._queues if k[0] == src]
            n = sum(len(self._queues.pop(k)) for k in keys)
            self._aborted.pop(src, None)
            self._gen[src] = self._gen.get(src, 0) + 1
            self._cv.notify_all()
            return n

    def discard_if(self, src: str, tag: Tag, pred: Callable[[bytearray], bool]) -> int:
        """Remove the messages buffered for (src, tag) that ``pred`` accepts; returns the count."""
        with self._cv:
            q = self._queues.get((src, tag))
            if not q:
                return 0
            keep = deque(m for m in q if not pred(m))
            n = len(q) - len(keep)
            if keep:
                self._queues[(src, tag)] = keep
            else:
                del self._queues[(src, tag)]
            return n

    def abort(self, src: str, session: str, reason: str) -> None:
        """``src`` stopped ``session`` (``"*"``: all): its awaited receives raise PeerAborted."""
        with self._cv:
            self._aborted.setdefault(src, {})[session] = reason
            self._cv.notify_all()

    def clear_abort(self, src: str, session: str) -> None:
        with self._cv:
            d = self._aborted.get(src)
            if d:
                d.pop(session, None)
                d.pop("*", None)

    def is_down(self, src: str) -> str | None:
        with self._cv:
            return self._down.get(src)

    def fail(self, exc: BaseException) -> None:
        """Every waiting and future recv raises ``exc`` (e.g. the router link broke)."""
        with self._cv:
            self._fatal = exc
            self._cv.notify_all()

    def close(self, reason: str = "transport closed") -> None:
        with self._cv:
            self._closed = reason
            self._cv.notify_all()

    def get(self, src: str, tag: Tag, timeout_s: float) -> bytearray:
        deadline = time.monotonic() + timeout_s
        key = (src, tag)
        with self._cv:
            gen = self._gen.get(src, 0)
            while True:
                if self._closed is not None:
                    raise ClosedTransport(f"{self._owner}: {self._closed}")
                q = self._queues.get(key)
                if q:
                    payload = q.popleft()
                    if not q:
                        del self._queues[key]
                    return payload
                if self._fatal is not None:
                    raise self._fatal
                ab = self._aborted.get(src)
                if ab:
                    sess = tag.session if tag.session in ab else "*" if "*" in ab else None
                    if sess is not None:
                        raise PeerAborted(src, ab[sess], sess)
                if src in self._down:
                    raise PartyUnavailable(src, f"{self._down[src]} (while {self._owner} awaited {tag})")
                if self._gen.get(src, 0) != gen:
                    raise PartyUnavailable(src, f"restarted (a new incarnation connected while "
                                                f"{self._owner} awaited {tag})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PartyTimeout(src, tag, timeout_s)
                self._cv.wait(min(left, 0.5))

    def pending(self) -> dict[tuple[str, Tag], int]:
        with self._cv:
            return {k: len(v) for k, v in self._queues.items()}


def new_incarnation() -> int:
    """A fresh random 48-bit incarnation id (one per transport instance)."""
    return int.from_bytes(os.urandom(6), "little")


class TransportBase:
    """What the transports here have alike: a name, a :class:`Mailbox` of what arrived for
    it, traffic counters and an incarnation (``name``, ``stats``, ``incarnation``), and
    :meth:`_take`, a receive from the mailbox counted in ``stats``."""

    def __init__(self, name: str, box: Mailbox, incarnation: int | None = None) -> None:
        self._name = name
        self._box = box
        self._stats = TransportStats()
        self._inc = new_incarnation() if incarnation is None else incarnation

    @property
    def name(self) -> str:
        """This party's name."""
        return self._name

    @property
    def stats(self) -> TransportStats:
        """Traffic counters."""
        return self._stats

    @property
    def incarnation(self) -> int:
        """This transport instance's incarnation id."""
        return self._inc

    def _take(self, src: str, tag: Tag, timeout_s: float) -> bytearray:
        """The next payload from ``src`` with exactly ``tag``, counted as received."""
        data = self._box.get(src, tag, timeout_s)
        self._stats.on_recv(len(data))
        return data
