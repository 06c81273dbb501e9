"""gRPC transport: a party dials the federation router with one bidirectional stream.

Mutual TLS: the party presents its certificate (CN = its name) and checks the
router's against the federation CA. Payloads larger than one frame are chunked
and reassembled (:mod:`party.chunking`); the receiver checks the declared size
against its cap before allocating. A peer whose stream ends is reported by the
router, and every ``recv`` waiting on it raises :class:`PartyUnavailable` at
once; if the router itself goes away, every ``recv`` raises too.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
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
from party.router import METHOD, read_tls
from party.transport import Mailbox, Tag, TransportStats

log = logging.getLogger("party.grpc")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", FRAME_LIMIT),
    ("grpc.max_send_message_length", FRAME_LIMIT),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.ssl_target_name_override", "router"),
]
_END = object()


class GrpcTransport:
    """One party's link to the router."""

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
    ) -> None:
        if name not in parties:
            raise ConfigError(f"party {name!r} is not in the federation ({', '.join(parties)})")
        self._name = name
        self._parties = list(parties)
        self._stats = TransportStats()
        self._box = Mailbox(name)
        self._reasm = Reassembler(max_message_bytes)
        self._out: queue.Queue[Any] = queue.Queue(maxsize=32)
        self._send_lock = threading.Lock()
        self._send_timeout_s = send_timeout_s
        self._chunk = chunk_bytes
        self._inc = int.from_bytes(os.urandom(6), "little")
        self._seq = 0
        self._closed = False
        self._errors: dict[str, str] = {}
        self.online: list[str] = []
        self._welcome = threading.Event()
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        self._channel = grpc.secure_channel(router, creds, options=CHANNEL_OPTIONS)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout_s)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise PartyUnavailable(
                "router", f"no TLS connection to {router} within {connect_timeout_s:g} s "
                "(router down, wrong address, or certificate rejected)"
            ) from None
        stub = self._channel.stream_stream(METHOD)
        self._call = stub(self._requests(), wait_for_ready=True)
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"grpc-read-{name}")
        self._reader.start()
        welcomed = self._welcome.wait(connect_timeout_s)
        err = self._box._fatal
        if err is not None or not welcomed:
            self.close()
            if isinstance(err, Exception):
                raise err
            raise PartyUnavailable("router", f"no welcome from {router} within {connect_timeout_s:g} s")

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

    #: Party.send may pass the codec's buffer list (see codec.encode_parts): one copy fewer.
    accepts_parts = True

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray | list[Buffer]) -> None:
        if self._closed:
            raise ClosedTransport(f"{self._name}: transport closed")
        if self._box._fatal is not None:
            raise self._box._fatal
        if dst not in self._parties:
            raise PartyUnavailable(dst, f"not a party of this federation ({', '.join(self._parties)})")
        if dst in self._errors:
            raise PartyUnavailable(dst, self._errors[dst])
        down = self._box.is_down(dst)
        if down is not None:
            raise PartyUnavailable(dst, down)
        parts: list[Buffer] = list(payload) if isinstance(payload, list) else [payload]
        size = sum(memoryview(p).nbytes for p in parts)
        if size > self._reasm.max_message_bytes:
            raise LocalProtocolError(
                f"message of {size} bytes for {dst!r} ({tag}) is over the federation cap "
                f"of {self._reasm.max_message_bytes} bytes ([federation].max_message_mb)"
            )
        chunks = split_parts(parts, self._chunk)
        deadline = time.monotonic() + self._send_timeout_s
        with self._send_lock:
            self._seq += 1
            base = {"k": "data", "src": self._name, "dst": dst, "tag": str(tag),
                    "inc": self._inc, "id": self._seq, "n": len(chunks), "size": size}
            for i, c in enumerate(chunks):
                frame = make_frame({**base, "i": i}, c)
                while True:
                    if self._box._fatal is not None:
                        raise self._box._fatal
                    try:
                        self._out.put(frame, timeout=0.5)
                        break
                    except queue.Full:
                        if time.monotonic() > deadline:
                            raise PartyTimeout(dst, tag, self._send_timeout_s) from None
        self._stats.on_send(size)

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        if src not in self._parties:
            raise PartyUnavailable(src, f"not a party of this federation ({', '.join(self._parties)})")
        data = self._box.get(src, tag, timeout_s)
        self._stats.on_recv(len(data))
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._out.put(_END, timeout=5)
            self._reader.join(timeout=5)
        except queue.Full:
            pass
        self._box.close()
        self._channel.close()

    # -- stream plumbing ------------------------------------------------------------------------
    def _requests(self) -> Iterator[bytes]:
        while True:
            item = self._out.get()
            if item is _END:
                return
            yield item

    def _read(self) -> None:
        try:
            for frame in self._call:
                header, body = parse_frame(frame)
                k = header["k"]
                if k == "data":
                    self._on_data(header, body)
                elif k == "down":
                    src = str(header.get("src"))
                    self._reasm.drop(src)
                    self._box.mark_down(src, str(header.get("msg", "disconnected")))
                elif k == "up":
                    self._box.mark_up(str(header.get("src")))
                elif k == "error":
                    dst = str(header.get("dst"))
                    self._errors[dst] = str(header.get("msg"))
                    self._box.mark_down(dst, str(header.get("msg")))
                elif k == "welcome":
                    self.online = list(header.get("online", []))
                    self._welcome.set()
            if not self._closed:
                self._box.fail(PartyUnavailable("router", "the router closed our stream"))
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            if self._closed and code == grpc.StatusCode.CANCELLED:
                return
            exc: Exception
            if code == grpc.StatusCode.PERMISSION_DENIED:
                exc = AuthenticationError(f"router refused {self._name!r}: {details}")
            elif code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
                exc = RemoteProtocolError(f"router rejected our stream: {details}", peer="router")
            else:
                exc = PartyUnavailable("router", f"stream ended: {code} {details}")
            log.warning("%s: %s", self._name, exc)
            self._box.fail(exc)
        except CodecError as e:
            log.error("%s: malformed frame from the router: %s", self._name, e)
            self._box.fail(e)
            self._call.cancel()
        finally:
            self._welcome.set()


    def _on_data(self, header: dict[str, Any], body: memoryview) -> None:
        """One data frame; a peer's protocol violation is charged to that peer only."""
        src = str(header.get("src"))
        try:
            tag = Tag.parse(str(header.get("tag")))
            payload = self._reasm.feed(header, body)
        except (CodecError, ValueError) as e:
            log.error("%s: bad frame from %r: %s", self._name, src, e)
            self._reasm.drop(src)
            self._box.mark_down(src, f"sent a malformed message ({e})")
            return
        if payload is not None:
            self._box.put(src, tag, payload)


def connect(config: FederationConfig, name: str, **kw: Any) -> Party:
    """Dial the federation's router as ``name`` and return a :class:`Party`."""
    transport = GrpcTransport.from_config(config, name, **kw)
    return Party(name, transport, role=config.party(name).role,
                 max_message_bytes=config.max_message_bytes)
