"""In-memory transport: a federation of parties as threads in one process.

The reference transport for tests and simulation. It carries encoded bytes, so
in-memory runs exercise the codec exactly as gRPC runs do. It keeps the delivery
contract of :mod:`party.transport`: a party that closed (or was
:meth:`InMemoryNetwork.disconnect`-ed) can come back as a new incarnation with
``network.transport(name)``; what its old incarnation sent and nobody received is
discarded, and messages sent to it while it was away are held (bounded) and
delivered to the new incarnation.
"""

from __future__ import annotations

import logging
import threading
import time

from party.errors import ClosedTransport, PartyTimeout, PartyUnavailable
from party.transport import Mailbox, Tag, TransportBase

log = logging.getLogger("party.inmemory")

#: What a sender may hold for one absent destination (bytes), as the gRPC transport.
HOLD_BYTES = 1 << 30


class InMemoryNetwork:
    """The shared switchboard of one in-memory federation."""

    def __init__(self, names: list[str] | tuple[str, ...], *, hold_bytes: int = HOLD_BYTES) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate party names in {list(names)}")
        self._lock = threading.Condition()
        self._boxes = {n: Mailbox(n) for n in names}
        self._transports: dict[str, InMemoryTransport] = {}
        self._dead: set[str] = set()
        self._held: dict[str, list[tuple[str, Tag, bytearray]]] = {}
        self._held_bytes: dict[str, int] = {}
        self.hold_bytes = hold_bytes

    @property
    def names(self) -> list[str]:
        return list(self._boxes)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is a party of this federation (O(1), unlike ``names``)."""
        return name in self._boxes

    def transport(self, name: str) -> InMemoryTransport:
        """The transport of party ``name``: the live one, or a new incarnation if it died."""
        with self._lock:
            if name not in self._boxes:
                raise PartyUnavailable(name, "not a member of this in-memory federation")
            t = self._transports.get(name)
            if t is not None and name not in self._dead:
                return t
            reborn = t is not None
            others = [b for n, b in self._boxes.items() if n != name]
            if reborn:  # a new incarnation: a fresh mailbox, the old one's messages are gone
                self._boxes[name] = Mailbox(name)
                self._dead.discard(name)
                # before anyone can see the new incarnation (wait_peer), so nobody reads the
                # old one's leftovers in a new run
                for b in others:
                    n = b.purge(name)
                    if n:
                        log.info("%s: discarded %d undelivered message(s) of %r's previous "
                                 "incarnation", b._owner, n, name)
                    b.mark_up(name)
            t = InMemoryTransport(self, name)
            box = self._boxes[name]
            held = self._held.pop(name, [])
            self._held_bytes.pop(name, None)
            for src, tag, payload in held:
                box.put(src, tag, payload)
            self._transports[name] = t
            self._lock.notify_all()
        return t

    def deliver(self, src: str, dst: str, tag: Tag, payload: bytearray) -> None:
        with self._lock:
            if dst not in self._boxes:
                raise PartyUnavailable(dst, "not a member of this federation")
            if dst in self._dead or dst not in self._transports:
                used = self._held_bytes.get(dst, 0) + len(payload)
                if used > self.hold_bytes:
                    raise PartyUnavailable(
                        dst, f"not connected, and {src!r} already holds {used - len(payload)} bytes "
                        f"for it (hold bound {self.hold_bytes} bytes)")
                self._held.setdefault(dst, []).append((src, tag, payload))
                self._held_bytes[dst] = used
                return
            box = self._boxes[dst]
        box.put(src, tag, payload)

    def disconnect(self, name: str, reason: str = "disconnected") -> None:
        """Simulate ``name`` dying: everyone awaiting it gets PartyUnavailable."""
        with self._lock:
            self._dead.add(name)
            self._transports.setdefault(name, InMemoryTransport(self, name))
            boxes = [b for n, b in self._boxes.items() if n != name]
            own = self._boxes[name]
        own.close(reason)
        for b in boxes:
            b.mark_down(name, reason)

    def abort(self, src: str, session: str, reason: str) -> None:
        with self._lock:
            boxes = [b for n, b in self._boxes.items() if n != src]
        for b in boxes:
            b.abort(src, session, reason)

    def incarnation_of(self, name: str) -> int | None:
        with self._lock:
            t = self._transports.get(name)
            return None if t is None or name in self._dead else t.incarnation

    def wait_up(self, name: str, timeout_s: float, other_than: int | None) -> int:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                t = self._transports.get(name)
                if t is not None and name not in self._dead and t.incarnation != other_than:
                    return t.incarnation
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PartyTimeout(name, "connect", timeout_s)
                self._lock.wait(min(left, 0.5))

    def box(self, name: str) -> Mailbox:
        return self._boxes[name]


class InMemoryTransport(TransportBase):
    """One party's view of an :class:`InMemoryNetwork`."""

    def __init__(self, network: InMemoryNetwork, name: str) -> None:
        super().__init__(name, network.box(name))
        self._net = network
        self._closed = False

    @property
    def peers(self) -> list[str]:
        return [n for n in self._net.names if n != self._name]

    def peer_incarnation(self, name: str) -> int | None:
        return self._net.incarnation_of(name)

    def wait_peer(self, name: str, *, timeout_s: float, other_than: int | None = None) -> int:
        return self._net.wait_up(name, timeout_s, other_than)

    def abort(self, session: str, reason: str) -> None:
        if self._closed or self._net.incarnation_of(self._name) != self._inc:
            return  # a dead incarnation says nothing (as over gRPC)
        self._net.abort(self._name, session, reason)

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        if self._closed:
            raise ClosedTransport(f"{self._name}: transport closed")
        data = payload if isinstance(payload, bytearray) else bytearray(payload)
        self._net.deliver(self._name, dst, tag, data)
        self._stats.on_send(len(data))

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        if self._closed:
            raise ClosedTransport(f"{self._name}: transport closed")
        if src not in self._net:  # a set lookup: the server of N clients polls N sources per round
            raise PartyUnavailable(src, "not a member of this federation")
        return self._take(src, tag, timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._net._transports.get(self._name) is self:
                self._net.disconnect(self._name, "closed its transport")
