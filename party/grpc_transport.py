"""gRPC transport: a party dials the federation router with one bidirectional stream.

Mutual TLS: the party presents its certificate (CN = its name) and checks the
router's against the federation CA. Payloads larger than one frame are chunked
and reassembled (:mod:`party.chunking`); the receiver checks the declared size
against its cap before allocating. A peer whose stream ends is reported by the
router, and every ``recv`` waiting on it raises :class:`PartyUnavailable` at
once; if the router itself goes away, every ``recv`` raises too.

This module holds the public face (:class:`GrpcTransport`: construction, the
:class:`~party.transport.Transport` methods, close) and :func:`connect`. The sending
half (what is held until acknowledged) is in :mod:`party.grpc_held`, the stream to
the router and what arrives on it in :mod:`party.grpc_link`; both names are
re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import grpc

from party.chunking import CHUNK_BYTES, FRAME_LIMIT, Buffer, Reassembler, make_frame
from party.codec import MAX_MESSAGE_BYTES
from party.config import FederationConfig
from party.errors import (
    ClosedTransport,
    ConfigError,
    LocalProtocolError,
    PartyTimeout,
    PartyUnavailable,
)
from party.files import read_tls
from party.grpc_held import _DATA_SLOTS as _DATA_SLOTS  # re-exported: was defined here
from party.grpc_held import _END, HOLD_BYTES, HOLD_S, _Msg
from party.grpc_held import _Link as _Link  # re-exported: was defined here
from party.grpc_link import _RouterLink
from party.party import Party
from party.transport import Mailbox, Tag, TransportBase

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

#: How long a party whose link to the router broke keeps trying to reconnect.
RECONNECT_S = 60.0
#: How long close() waits for held messages to be acknowledged.
LINGER_S = 10.0


class GrpcTransport(_RouterLink, TransportBase):
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
        super().__init__(name, Mailbox(name))
        self._parties = list(parties)
        self._reasm = Reassembler(max_message_bytes)
        self._send_lock = threading.Lock()
        self._state = threading.Condition()
        self._send_timeout_s = send_timeout_s
        self._chunk = chunk_bytes
        self.hold_bytes = hold_bytes
        self.hold_s = hold_s
        self.reconnect_s = reconnect_s
        self._connect_timeout_s = connect_timeout_s
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
    def peers(self) -> list[str]:
        return [p for p in self._parties if p != self._name]

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
        return self._take(src, tag, timeout_s)

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

    # -- resending (the rest of the sending half: party.grpc_held) ---------------------------
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


def connect(config: FederationConfig, name: str, **kw: Any) -> Party:
    """Dial the federation's router as ``name`` and return a :class:`Party`."""
    transport = GrpcTransport.from_config(config, name, **kw)
    return Party(name, transport, role=config.party(name).role,
                 max_message_bytes=config.max_message_bytes)
