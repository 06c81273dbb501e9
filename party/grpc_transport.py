"""gRPC transport: a party dials the federation router with one bidirectional stream.

Mutual TLS: the party presents its certificate (CN = its name) and checks the
router's against the federation CA. Payloads larger than one frame are chunked
and reassembled (:mod:`party.chunking`); the receiver checks the declared size
against its cap before allocating. A peer whose stream ends is reported by the
router, and every ``recv`` waiting on it raises :class:`PartyUnavailable` at
once; if the router itself goes away, every ``recv`` raises too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import grpc

from party.chunking import (
    CHUNK_BYTES,
    FRAME_LIMIT,
    Buffer,
    Reassembler,
    make_frame,
    parse_frame,
    split_parts,
)
from party.codec import MAX_MESSAGE_BYTES
from party.config import FederationConfig
from party.errors import (
    AuthenticationError,
    ClosedTransport,
    CodecError,
    ConfigError,
    LocalProtocolError,
    PartyTimeout,
    PartyUnavailable,
    RemoteProtocolError,
)
from party.party import Party
from party.router import INC_METADATA, METHOD, read_tls
from party.transport import Mailbox, Tag, TransportStats

log = logging.getLogger("party.grpc")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", FRAME_LIMIT),
    ("grpc.max_send_message_length", FRAME_LIMIT),
    # a ping every 45 s, a dead TCP peer declared after 40 s without its ack: a network
    # stall of up to ~40 s heals without a reconnect (a killed process is seen at once: FIN/RST)
    ("grpc.keepalive_time_ms", 45_000),
    ("grpc.keepalive_timeout_ms", 40_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.ssl_target_name_override", "router"),
]
_END = object()


#: What a sender holds for one destination until acknowledged (bytes / seconds).
HOLD_BYTES = 1 << 30
HOLD_S = 300.0
#: How long a party whose link to the router broke keeps trying to reconnect.
RECONNECT_S = 60.0
#: How long close() waits for held messages to be acknowledged.
LINGER_S = 10.0
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


class GrpcTransport:
    """One party's link to the router, keeping the delivery contract of :mod:`party.transport`.

    A data frame's header carries the receiver incarnation it is bound to (``rinc``)
    and a sequence number per (sender incarnation, receiver incarnation) (``id``).
    The receiver delivers only the next sequence number, drops what it already
    delivered, and acknowledges each message (an ``ack`` frame through the router).
    The sender resends what is unacknowledged when its own link or the receiver's
    comes back. If the link to the router breaks without a goodbye, the transport
    reconnects as the same incarnation for up to ``reconnect_s``.
    """

    def __init__(
        self,
        name: str,
        *,
        router: str,
        ca: bytes,
        cert: bytes,
        key: bytes,
        parties: list[str],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        connect_timeout_s: float = 30.0,
        send_timeout_s: float = 300.0,
        chunk_bytes: int = CHUNK_BYTES,
        hold_bytes: int = HOLD_BYTES,
        hold_s: float = HOLD_S,
        reconnect_s: float = RECONNECT_S,
    ) -> None:
        if name not in parties:
            raise ConfigError(f"party {name!r} is not in the federation ({', '.join(parties)})")
        self._name = name
        self._parties = list(parties)
        self._stats = TransportStats()
        self._box = Mailbox(name)
        self._reasm = Reassembler(max_message_bytes)
        self._send_lock = threading.Lock()
        self._state = threading.Condition()
        self._send_timeout_s = send_timeout_s
        self._chunk = chunk_bytes
        self.hold_bytes = hold_bytes
        self.hold_s = hold_s
        self.reconnect_s = reconnect_s
        self._connect_timeout_s = connect_timeout_s
        self._inc = int.from_bytes(os.urandom(6), "little")
        self._closed = False
        self._errors: dict[str, str] = {}
        self._held: dict[str, deque[_Msg]] = {p: deque() for p in parties if p != name}
        self._held_bytes: dict[str, int] = dict.fromkeys(self._held, 0)
        self._peer_inc: dict[str, int | None] = dict.fromkeys(self._held)
        self._known_inc: dict[str, int] = {}  # last incarnation seen of each peer (even if down now)
        self._next_seq: dict[tuple[str, int], int] = {}  # (dst, rinc) -> last seq assigned
        self._delivered: dict[tuple[str, int], int] = {}  # (src, src inc) -> last seq delivered
        self._nacked: dict[tuple[str, int], int] = {}  # (src, src inc) -> seq last asked again
        self._expired: dict[str, str] = {}
        self.discarded = 0  # messages discarded because their incarnation died (logged)
        self.online: list[str] = []
        self._epoch = 0
        self._kick = threading.Event()
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        self._router = router
        self._channel = grpc.secure_channel(router, creds, options=CHANNEL_OPTIONS)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout_s)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise PartyUnavailable(
                "router", f"no TLS connection to {router} within {connect_timeout_s:g} s "
                "(router down, wrong address, or certificate rejected)"
            ) from None
        self._welcome = threading.Event()
        self._link = self._open_link()
        self._reader = threading.Thread(target=self._run_reader, daemon=True, name=f"grpc-read-{name}")
        self._reader.start()
        welcomed = self._welcome.wait(connect_timeout_s)
        err = self._box._fatal
        if err is not None or not welcomed:
            self.close()
            if isinstance(err, Exception):
                raise err
            raise PartyUnavailable("router", f"no welcome from {router} within {connect_timeout_s:g} s")
        self._pump = threading.Thread(target=self._run_pump, daemon=True, name=f"grpc-pump-{name}")
        self._pump.start()

    @classmethod
    def from_config(cls, config: FederationConfig, name: str, **kw: Any) -> GrpcTransport:
        pc = config.party(name)
        return cls(
            name,
            router=config.router,
            ca=read_tls(config.tls.ca, "[tls].ca"),
            cert=read_tls(pc.cert, f"[parties.{name}].cert"),
            key=read_tls(pc.key, f"[parties.{name}].key"),
            parties=list(config.parties),
            max_message_bytes=config.max_message_bytes,
            **kw,
        )

    # -- Transport protocol -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def peers(self) -> list[str]:
        return [p for p in self._parties if p != self._name]

    @property
    def stats(self) -> TransportStats:
        return self._stats

    @property
    def incarnation(self) -> int:
        return self._inc

    def peer_incarnation(self, name: str) -> int | None:
        with self._state:
            return self._peer_inc.get(name)

    def wait_peer(self, name: str, *, timeout_s: float, other_than: int | None = None) -> int:
        deadline = time.monotonic() + timeout_s
        with self._state:
            while True:
                inc = self._peer_inc.get(name)
                if inc is not None and inc != other_than:
                    return inc
                if self._box._fatal is not None:
                    raise self._box._fatal
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PartyTimeout(name, "connect", timeout_s)
                self._state.wait(min(left, 0.5))

    #: Party.send may pass the codec's buffer list (see codec.encode_parts): one copy fewer.
    accepts_parts = True

    def _check_sendable(self, dst: str) -> None:
        if self._closed:
            raise ClosedTransport(f"{self._name}: transport closed")
        if self._box._fatal is not None:
            raise self._box._fatal
        if dst not in self._parties or dst == self._name:
            raise PartyUnavailable(dst, f"not a peer in this federation ({', '.join(self._parties)})")
        if dst in self._errors:
            raise PartyUnavailable(dst, self._errors[dst])
        if dst in self._expired:
            raise PartyUnavailable(dst, self._expired[dst])

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray | list[Buffer]) -> None:
        self._check_sendable(dst)
        parts: list[Buffer] = list(payload) if isinstance(payload, list) else [payload]
        size = sum(memoryview(p).nbytes for p in parts)
        if size > self._reasm.max_message_bytes:
            raise LocalProtocolError(
                f"message of {size} bytes for {dst!r} ({tag}) is over the federation cap "
                f"of {self._reasm.max_message_bytes} bytes ([federation].max_message_mb)"
            )
        deadline = time.monotonic() + self._send_timeout_s
        with self._state:
            while self._held_bytes[dst] and self._held_bytes[dst] + size > self.hold_bytes:
                if self._peer_inc[dst] is None:
                    raise PartyUnavailable(
                        dst, f"not connected, and {self._name!r} already holds "
                        f"{self._held_bytes[dst] >> 20} MB for it (hold bound {self.hold_bytes >> 20} MB)")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PartyTimeout(dst, tag, self._send_timeout_s)
                self._state.wait(min(left, 0.5))
                self._check_sendable(dst)
            rinc = self._peer_inc[dst]
            m = _Msg(tag, size, None if rinc is not None else b"".join(bytes(memoryview(p)) for p in parts))
            if rinc is not None:
                self._bind(dst, m, rinc, parts)
            self._held[dst].append(m)
            self._held_bytes[dst] += size
        self._transmit(dst)
        self._stats.on_send(size)

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        if src not in self._parties:
            raise PartyUnavailable(src, f"not a party of this federation ({', '.join(self._parties)})")
        data = self._box.get(src, tag, timeout_s)
        self._stats.on_recv(len(data))
        return data

    def abort(self, session: str, reason: str) -> None:
        if self._closed or self._box._fatal is not None:
            return
        self._link.out.put(make_frame({"k": "abort", "src": self._name, "session": session,
                                       "msg": str(reason)[:500]}))

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the messages held for live or not yet seen peers are acknowledged.

        Returns False on timeout (or if the link failed).
        """
        deadline = time.monotonic() + timeout_s
        with self._state:
            # what a live peer, or one that never connected yet, may still take; not what
            # waits for a peer that came and went (it may never return)
            while any(q and (self._peer_inc[d] is not None or d not in self._known_inc)
                      and not self._box._aborted.get(d)  # it stopped the run: nothing to wait for
                      for d, q in self._held.items()):
                left = deadline - time.monotonic()
                if left <= 0 or self._box._fatal is not None:
                    return False
                self._state.wait(min(left, 0.2))
        return True

    def close(self, linger_s: float = LINGER_S) -> None:
        """Close; first wait up to ``linger_s`` for what is held to be acknowledged.

        What is still held then (a peer that never connected) is lost with this
        incarnation, and said so in one error line naming the peers.
        """
        if self._closed:
            return
        if self._box._fatal is None:
            self.flush(timeout_s=linger_s)
            with self._state:
                left = {d: len(q) for d, q in self._held.items() if q}
            if left:
                log.error("%s: closing with %s unacknowledged: those messages are lost", self._name,
                          ", ".join(f"{n} message(s) for {d!r}" for d, n in left.items()))
        self._closed = True
        link = self._link
        link.out.put(make_frame({"k": "bye", "src": self._name}))
        link.out.put(_END)
        self._kick.set()
        self._reader.join(timeout=5)
        self._box.close()
        self._channel.close()

    # -- sending: binding, transmission, acknowledgements -----------------------------------
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

    def _run_pump(self) -> None:
        """Resends after a reconnect or a peer's return; expires what was held too long."""
        while not self._closed:
            self._kick.wait(1.0)
            self._kick.clear()
            if self._closed:
                return
            for d in self.peers:
                try:
                    self._transmit(d)
                except Exception:  # pragma: no cover - a bug here must not kill the pump silently
                    log.exception("%s: resend to %r failed", self._name, d)
            self._expire_held()

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

    # -- the link to the router ------------------------------------------------------------------
    def _open_link(self) -> _Link:
        self._epoch += 1
        link = _Link(self._epoch)
        stub = self._channel.stream_stream(METHOD)
        link.call = stub(self._requests(link), wait_for_ready=True,
                         metadata=((INC_METADATA, str(self._inc)),))
        return link

    def _requests(self, link: _Link) -> Iterator[bytes]:
        try:
            while True:
                item = link.out.get()
                if item is _END:
                    return
                if isinstance(item, tuple):  # a data frame: free its backpressure slot
                    yield item[0]
                    with contextlib.suppress(ValueError):
                        link.slots.release()
                else:
                    yield item
        finally:
            link.dead.set()

    def _run_reader(self) -> None:
        failed_at: float | None = None
        while True:
            link = self._link
            outcome = self._read(link)
            link.dead.set()
            with contextlib.suppress(ValueError):
                for _ in range(_DATA_SLOTS):
                    link.slots.release()
            if outcome is None or self._closed:
                self._welcome.set()
                return
            # the link broke without a goodbye: reconnect as the same incarnation
            failed_at = failed_at or time.monotonic()
            if time.monotonic() - failed_at > self.reconnect_s or not self._welcome.is_set():
                log.warning("%s: %s", self._name, outcome)
                self._box.fail(outcome)
                self._welcome.set()
                return
            log.info("%s: link to the router lost (%s); reconnecting", self._name, outcome)
            time.sleep(0.2)
            try:
                grpc.channel_ready_future(self._channel).result(
                    timeout=max(0.1, self.reconnect_s - (time.monotonic() - failed_at)))
            except grpc.FutureTimeoutError:
                continue
            with self._state:
                self._link = self._open_link()
                for q in self._held.values():
                    for m in q:
                        m.sent = -1
            self._reasm.drop_all()
            self._kick.set()
            failed_at = None  # reset once the new link is welcomed (see _read)

    def _read(self, link: _Link) -> Exception | None:
        """Read one link until it ends; None if it ended for good, else the error to retry on."""
        try:
            for frame in link.call:
                header, body = parse_frame(frame)
                k = header["k"]
                if k == "data":
                    self._on_data(header, body)
                elif k == "ack":
                    self._on_ack(header)
                elif k == "nack":
                    self._on_nack(header)
                elif k == "down":
                    self._peer_down(str(header.get("src")), header.get("inc"),
                                    str(header.get("msg", "disconnected")))
                elif k == "up":
                    self._peer_up(str(header.get("src")), int(header.get("inc", 0)))
                elif k == "abort":
                    self._box.abort(str(header.get("src")), str(header.get("session", "*")),
                                    str(header.get("msg", "")))
                elif k == "error":
                    dst = str(header.get("dst"))
                    self._errors[dst] = str(header.get("msg"))
                    self._box.mark_down(dst, str(header.get("msg")))
                elif k == "shutdown":
                    self._box.fail(PartyUnavailable("router", str(header.get("msg", "shut down"))))
                    return None
                elif k == "welcome":
                    online = header.get("online", {})
                    online = online if isinstance(online, dict) else {}
                    self.online = sorted(online)
                    with self._state:
                        gone = [p for p, i in self._peer_inc.items() if i is not None and p not in online]
                    for p in gone:
                        self._peer_down(p, self._known_inc.get(p), "disconnected while our link was down")
                    for p, inc in online.items():
                        self._peer_up(str(p), int(inc))
                    self._welcome.set()
            if self._closed:
                return None
            return PartyUnavailable("router", "the router closed our stream")
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            if self._closed and code == grpc.StatusCode.CANCELLED:
                return None
            exc: Exception
            if code == grpc.StatusCode.PERMISSION_DENIED:
                exc = AuthenticationError(f"router refused {self._name!r}: {details}")
            elif code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
                exc = RemoteProtocolError(f"router rejected our stream: {details}", peer="router")
            else:
                return PartyUnavailable("router", f"stream ended: {code} {details}")
            log.warning("%s: %s", self._name, exc)
            self._box.fail(exc)
            return None
        except CodecError as e:
            log.error("%s: malformed frame from the router: %s", self._name, e)
            self._box.fail(e)
            link.call.cancel()
            return None

    def _nack(self, src: str, src_inc: int, seq: int) -> None:
        """Ask ``src`` to resend from message ``seq`` (once per missing message)."""
        if self._nacked.get((src, src_inc)) == seq or self._closed:
            return
        self._nacked[(src, src_inc)] = seq
        self._link.out.put(make_frame({"k": "nack", "src": self._name, "dst": src,
                                       "inc": self._inc, "to": src_inc, "id": seq}))

    def _on_nack(self, header: dict[str, Any]) -> None:
        src = str(header.get("src"))
        if src not in self._held:
            return
        with self._state:
            for m in self._held[src]:
                if m.rinc == header.get("inc"):
                    m.sent = -1
        self._kick.set()

    def _send_ack(self, src: str, src_inc: int, seq: int) -> None:
        if not self._closed:
            self._link.out.put(make_frame({"k": "ack", "src": self._name, "dst": src,
                                           "inc": self._inc, "to": src_inc, "id": seq}))

    def _on_data(self, header: dict[str, Any], body: memoryview) -> None:
        """One data frame; a peer's protocol violation is charged to that peer only."""
        src = str(header.get("src"))
        try:
            inc, rinc, seq = int(header["inc"]), int(header["rinc"]), int(header["id"])
            i, n = int(header["i"]), int(header["n"])
        except (KeyError, TypeError, ValueError):
            log.error("%s: bad frame header from %r: %s", self._name, src, sorted(header))
            self._box.mark_down(src, "sent a malformed message (frame header incomplete)")
            return
        if rinc != self._inc:
            return  # bound to another incarnation of ours: not for this run
        known = self._known_inc.get(src)
        if known is not None and known != inc:
            self._peer_up(src, inc)  # its data overtook its 'up' notice
        elif known is None:
            with self._state:
                self._known_inc[src] = inc
        last = self._delivered.get((src, inc), 0)
        if seq != last + 1:
            if seq <= last and i == n - 1:
                self._send_ack(src, inc, last)  # a resend of what we already have
            elif seq > last + 1:
                self._nack(src, inc, last + 1)  # a gap: ask for a resend from the missing one
            return
        nxt = self._reasm.next_chunk(src, inc, seq)
        if i != nxt:
            # After a reconnect, frames of the old link can trail the resend: a chunk that is
            # not the next one is skipped (the sender resends the whole message), a first
            # chunk restarts it. Frames of one message are identical in every transmission.
            if i != 0:
                self._nack(src, inc, seq)
                return
            self._reasm.drop_message(src, inc, seq)
        try:
            tag = Tag.parse(str(header.get("tag")))
            payload = self._reasm.feed(header, body)
        except (CodecError, ValueError) as e:
            log.error("%s: bad frame from %r: %s", self._name, src, e)
            self._reasm.drop(src)
            self._box.mark_down(src, f"sent a malformed message ({e})")
            return
        if payload is not None:
            self._delivered[(src, inc)] = seq
            self._box.put(src, tag, payload)
            self._send_ack(src, inc, seq)


def connect(config: FederationConfig, name: str, **kw: Any) -> Party:
    """Dial the federation's router as ``name`` and return a :class:`Party`."""
    transport = GrpcTransport.from_config(config, name, **kw)
    return Party(name, transport, role=config.party(name).role,
                 max_message_bytes=config.max_message_bytes)
