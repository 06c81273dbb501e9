"""What a gRPC party holds for each peer until it is acknowledged, and the link it sends on.

:class:`_Sender` is the sending half of :class:`party.grpc_transport.GrpcTransport`:
a message is bound to the receiver's incarnation and given a sequence number
(``_bind``), put on the current link in order with backpressure (``_transmit``),
dropped when acknowledged (``_on_ack``) or when the incarnation it was bound to dies
(``_discard_bound``), marked for resend on a ``nack`` or a peer's return, and expired
after ``hold_s``. The state it works on is created by ``GrpcTransport.__init__``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any

from party.chunking import Buffer, Reassembler, make_frame, split_parts
from party.transport import Mailbox, Tag

log = logging.getLogger("party.grpc")

_END = object()

#: What a sender holds for one destination until acknowledged (bytes / seconds).
HOLD_BYTES = 1 << 30
HOLD_S = 300.0
_DATA_SLOTS = 32  # data frames queued on the link at once (backpressure)


class _Msg:
    """One message held by its sender until the receiver acknowledges it."""

    __slots__ = ("frames", "payload", "rinc", "sent", "seq", "size", "t", "tag")

    def __init__(self, tag: Tag, size: int, payload: bytes | None) -> None:
        self.tag = tag
        self.size = size
        self.payload = payload  # kept until bound (receiver incarnation known)
        self.frames: list[bytes] = []
        self.rinc: int | None = None
        self.seq = 0
        self.sent = -1  # link epoch it was last put on the wire in
        self.t = time.monotonic()


class _Link:
    """One gRPC call to the router: its outbound queue and backpressure slots."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.out: queue.Queue[Any] = queue.Queue()
        self.slots = threading.BoundedSemaphore(_DATA_SLOTS)
        self.dead = threading.Event()
        self.call: Any = None


class _Sender:
    """Binding, transmission, acknowledgement and expiry of what is held for each peer."""

    # set by GrpcTransport.__init__
    _name: str
    _inc: int
    _chunk: int
    _closed: bool
    hold_s: float
    discarded: int
    _box: Mailbox
    _reasm: Reassembler
    _send_lock: threading.Lock
    _state: threading.Condition
    _kick: threading.Event
    _link: _Link
    _held: dict[str, deque[_Msg]]
    _held_bytes: dict[str, int]
    _peer_inc: dict[str, int | None]
    _known_inc: dict[str, int]  # last incarnation seen of each peer (even if down now)
    _next_seq: dict[tuple[str, int], int]  # (dst, rinc) -> last seq assigned
    _expired: dict[str, str]

    def _bind(self, dst: str, m: _Msg, rinc: int, parts: list[Buffer] | None = None) -> None:
        """Give ``m`` its receiver incarnation and sequence number; make its frames (state lock held)."""
        if parts is None:
            assert m.payload is not None
            parts = [m.payload]
        key = (dst, rinc)
        seq = self._next_seq.get(key, 0) + 1
        self._next_seq[key] = seq
        m.rinc, m.seq = rinc, seq
        base = {"k": "data", "src": self._name, "dst": dst, "tag": str(m.tag), "inc": self._inc,
                "rinc": rinc, "id": seq, "size": m.size}
        chunks = split_parts(parts, self._chunk)
        base["n"] = len(chunks)
        m.frames = [make_frame({**base, "i": i}, c) for i, c in enumerate(chunks)]
        m.payload = None

    def _transmit(self, dst: str) -> None:
        """Put every bound, not yet sent message for ``dst`` on the current link, in order."""
        with self._send_lock:
            while True:
                with self._state:
                    link = self._link
                    rinc = self._peer_inc.get(dst)
                    m = next((x for x in self._held[dst] if x.sent != link.epoch), None)
                    if m is None or rinc is None or m.rinc != rinc:
                        return
                    m.sent = link.epoch
                for f in m.frames:
                    while not link.slots.acquire(timeout=0.5):
                        if link.dead.is_set() or self._closed or self._box._fatal is not None:
                            return
                    link.out.put((f,))
                    if link.dead.is_set():
                        return

    def _expire_held(self) -> None:
        now = time.monotonic()
        with self._state:
            for d, q in self._held.items():
                if q and now - q[0].t > self.hold_s and d not in self._expired:
                    why = (f"{len(q)} message(s) for it unacknowledged after {self.hold_s:g} s "
                           f"(hold bound; first {q[0].tag})")
                    self._expired[d] = why
                    log.error("%s: %r %s", self._name, d, why)
                    self._box.mark_down(d, why)
                    self._state.notify_all()

    def _discard_bound(self, dst: str, keep: int | None) -> None:
        """Drop messages bound to an incarnation of ``dst`` other than ``keep`` (state lock held)."""
        q = self._held[dst]
        old = [m for m in q if m.rinc is not None and m.rinc != keep]
        if not old:
            return
        for m in old:
            q.remove(m)
            self._held_bytes[dst] -= m.size
        self.discarded += len(old)
        log.warning("%s: discarded %d unacknowledged message(s) for %r's dead incarnation "
                    "(first %s)", self._name, len(old), dst, old[0].tag)
        self._state.notify_all()

    def _on_ack(self, header: dict[str, Any]) -> None:
        src = str(header.get("src"))
        q = self._held.get(src)
        if q is None:
            return
        rinc, seq = header.get("inc"), header.get("id")
        if not isinstance(seq, int) or isinstance(seq, bool):
            log.warning("%s: malformed ack from %r ignored", self._name, src)
            return  # a peer's bad frame must not stop our reader
        with self._state:
            while q and q[0].rinc == rinc and q[0].seq <= seq:
                self._held_bytes[src] -= q.popleft().size
            self._state.notify_all()

    def _peer_up(self, src: str, inc: int) -> None:
        if src not in self._held:
            return
        known = self._known_inc.get(src)
        if known is not None and known != inc:
            # before wait_peer can see the new incarnation: nobody reads the old one's leftovers
            self._reasm.drop(src)
            n = self._box.purge(src)
            if n:
                log.warning("%s: discarded %d undelivered message(s) of %r's previous incarnation",
                            self._name, n, src)
            self.discarded += n
            self._box.mark_up(src)
        with self._state:
            self._peer_inc[src] = inc
            self._known_inc[src] = inc
            self._expired.pop(src, None)
            self._discard_bound(src, inc)
            for m in self._held[src]:
                if m.rinc is None:
                    self._bind(src, m, inc)
                m.sent = -1  # its link may have dropped what we sent: resend all unacknowledged
            self._state.notify_all()
        self._reasm.drop(src)
        self._box.mark_up(src)
        self._kick.set()

    def _peer_down(self, src: str, inc: Any, msg: str) -> None:
        with self._state:
            if src not in self._held or (self._known_inc.get(src) not in (None, inc)):
                return  # a stale notice about an incarnation already replaced
            self._peer_inc[src] = None
            self._discard_bound(src, None)
            self._state.notify_all()
        self._reasm.drop(src)
        self._box.mark_down(src, msg)

    def _on_nack(self, header: dict[str, Any]) -> None:
        src = str(header.get("src"))
        if src not in self._held:
            return
        with self._state:
            for m in self._held[src]:
                if m.rinc == header.get("inc"):
                    m.sent = -1
        self._kick.set()

