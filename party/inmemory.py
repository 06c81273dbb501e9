"""In-memory transport: a federation of parties as threads in one process.

The reference transport for tests and simulation. It carries encoded bytes, so
in-memory runs exercise the codec exactly as gRPC runs do.
"""

from __future__ import annotations

import threading

from party.errors import ClosedTransport, PartyUnavailable
from party.transport import Mailbox, Tag, TransportStats


class InMemoryNetwork:
    """The shared switchboard of one in-memory federation."""

    def __init__(self, names: list[str] | tuple[str, ...]) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate party names in {list(names)}")
        self._lock = threading.Lock()
        self._boxes = {n: Mailbox(n) for n in names}
        self._transports: dict[str, InMemoryTransport] = {}
        self._dead: set[str] = set()

    @property
    def names(self) -> list[str]:
        return list(self._boxes)

    def transport(self, name: str) -> InMemoryTransport:
        """The transport of party ``name`` (one per name)."""
        with self._lock:
            if name not in self._boxes:
                raise PartyUnavailable(name, "not a member of this in-memory federation")
            t = self._transports.get(name)
            if t is None:
                t = InMemoryTransport(self, name)
                self._transports[name] = t
            return t

    def deliver(self, src: str, dst: str, tag: Tag, payload: bytearray) -> None:
        with self._lock:
            if dst not in self._boxes:
                raise PartyUnavailable(dst, "not a member of this federation")
            if dst in self._dead:
                raise PartyUnavailable(dst, "disconnected")
            box = self._boxes[dst]
        box.put(src, tag, payload)

    def disconnect(self, name: str, reason: str = "disconnected") -> None:
        """Simulate ``name`` dying: everyone awaiting it gets PartyUnavailable."""
        with self._lock:
            self._dead.add(name)
            boxes = [b for n, b in self._boxes.items() if n != name]
            own = self._boxes[name]
        own.close(reason)
        for b in boxes:
            b.mark_down(name, reason)

    def box(self, name: str) -> Mailbox:
        return self._boxes[name]


class InMemoryTransport:
    """One party's view of an :class:`InMemoryNetwork`."""

    def __init__(self, network: InMemoryNetwork, name: str) -> None:
        self._net = network
        self._name = name
        self._box = network.box(name)
        self._stats = TransportStats()
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def peers(self) -> list[str]:
        return [n for n in self._net.names if n != self._name]

    @property
    def stats(self) -> TransportStats:
        return self._stats

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        if self._closed:
            raise ClosedTransport(f"{self._name}: transport closed")
        data = payload if isinstance(payload, bytearray) else bytearray(payload)
        self._net.deliver(self._name, dst, tag, data)
        self._stats.on_send(len(data))

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        if src not in self._net.names:
            raise PartyUnavailable(src, "not a member of this federation")
        data = self._box.get(src, tag, timeout_s)
        self._stats.on_recv(len(data))
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._net.disconnect(self._name, "closed its transport")
