"""The gRPC party's stream to the router: opening it, reading it, reconnecting, receiving.

:class:`_RouterLink` is the receiving half of :class:`party.grpc_transport.GrpcTransport`.
It reads the router's frames (data, acks, peer up/down notices, aborts, errors) and,
if the stream breaks without a goodbye, reconnects as the same incarnation for up to
``reconnect_s``. A data frame is delivered only if it is the next sequence number of
its sender's incarnation; what was already delivered is acknowledged again, a gap is
asked for again (``nack``); a peer's malformed frame is charged to that peer only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from party.chunking import make_frame, parse_frame
from party.errors import AuthenticationError, CodecError, PartyUnavailable, RemoteProtocolError
from party.grpc_held import _DATA_SLOTS, _END, _Link, _Sender
from party.router import INC_METADATA, METHOD
from party.transport import Tag

log = logging.getLogger("party.grpc")


class _RouterLink(_Sender):
    """The link to the router and the frames that arrive on it."""

    # set by GrpcTransport.__init__
    _channel: grpc.Channel
    _epoch: int
    _welcome: threading.Event
    _errors: dict[str, str]
    _delivered: dict[tuple[str, int], int]  # (src, src inc) -> last seq delivered
    _nacked: dict[tuple[str, int], int]  # (src, src inc) -> seq last asked again
    online: list[str]
    reconnect_s: float

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

