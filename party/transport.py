"""The Transport protocol: named parties exchanging tagged byte payloads.

A :class:`Tag` names one message slot: (protocol, session, round, step). Runs of
different protocols, sessions and rounds never mix, because ``recv`` waits for an
exact (src, tag); messages that arrive for a tag nobody awaits yet are buffered,
in order, per (src, tag).

:class:`Transport` moves bytes; :class:`party.Party` adds the codec and types.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from party.errors import ClosedTransport, PartyTimeout, PartyUnavailable


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
                if src in self._down:
                    raise PartyUnavailable(src, f"{self._down[src]} (while {self._owner} awaited {tag})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PartyTimeout(src, tag, timeout_s)
                self._cv.wait(min(left, 0.5))

    def pending(self) -> dict[tuple[str, Tag], int]:
        with self._cv:
            return {k: len(v) for k, v in self._queues.items()}
