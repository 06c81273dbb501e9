"""The federation router: every party dials it with one bidirectional gRPC stream.

    python -m party.router --config fed.toml

Mutual TLS: a party's identity is the common name of its client certificate
(signed by the federation CA). The router refuses a frame whose ``src`` differs
from that identity (PERMISSION_DENIED), a frame for a party not in the
federation (an error frame back to the sender), a malformed frame
(INVALID_ARGUMENT) and a declared message size over the cap (RESOURCE_EXHAUSTED),
each before forwarding or allocating anything. Frames are forwarded unchanged.

The router holds no messages (senders hold them until acknowledged; see the
delivery contract in :mod:`party.transport`). When a party's stream ends, every
other party gets a ``down`` notice (at once on a goodbye or a restart, after a
short grace when the link just vanished), so nobody waits for a dead peer until
its timeout. A second router on a port in use refuses to start.

Revocation: on every connection the router checks the deny list beside the CA
(``revoked.json``, :class:`party.enroll.DenyList`: a revoked party name or
certificate serial is refused with PERMISSION_DENIED), and it re-reads the list
every second and drops the live link of a party revoked meanwhile. With
``enroll=`` (or ``[federation].enroll``) it also serves join-token enrollment
(:class:`party.enroll.EnrollmentServer`) on that address.

What the router learns: who talks to whom, when, and how much (tags and sizes);
payloads are opaque to it only in the sense that protocols encrypt or mask what
must stay secret — the router is not trusted with anything a protocol leaves in
the clear.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from party import cli
from party.chunking import FRAME_LIMIT, make_frame, parse_frame
from party.config import FederationConfig, load_federation
from party.errors import CodecError, ConfigError
from party.files import read_tls as read_tls  # re-exported: its old home
from party.grpc_server import bind_server

log = logging.getLogger("party.router")

METHOD = "/tessera.Router/Connect"
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", FRAME_LIMIT),
    ("grpc.max_send_message_length", FRAME_LIMIT),
    # a ping every 45 s, a dead TCP peer declared after 40 s without its ack: a network
    # stall of up to ~40 s heals without a reconnect (a killed process is seen at once: FIN/RST)
    ("grpc.keepalive_time_ms", 45_000),
    ("grpc.keepalive_timeout_ms", 40_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),  # 0: never GOAWAY a party for its keepalive pings (long CPU-bound phases send no data)
    ("grpc.max_concurrent_streams", 1024),
]
_CLOSE = object()


class _Link:
    """One connected party: its outbound queue and its stream's context."""

    def __init__(self, name: str, inc: int, context: grpc.ServicerContext,
                 serial: int | None = None) -> None:
        self.name = name
        self.inc = inc
        self.context = context
        self.serial = serial
        self.out: queue.Queue[Any] = queue.Queue(maxsize=64)
        self.said_bye = False


#: How long a party whose link vanished (no goodbye) may take to reconnect as the same
#: incarnation before its peers are told it is down.
GRACE_S = 5.0
#: How long the router remembers a party's abort for peers that connect after it.
ABORT_MEMORY_S = 60.0
INC_METADATA = "tessera-inc"


class Router:
    """Routes frames between the parties of one federation.

    The router holds no messages: a sender holds each message until the receiver
    acknowledges it (:mod:`party.transport`, the delivery contract), so a frame for
    a party that is not connected is dropped here and resent by its sender when
    that party connects. The router tracks each party's incarnation and tells the
    others when one comes up (``up``, with its incarnation) or goes down (``down``):
    at once on a goodbye or when a new incarnation replaces it, after
    ``grace_s`` when its link just vanished (it may be a network blip).
    """

    def __init__(self, config: FederationConfig, *, listen: str | None = None,
                 grace_s: float = GRACE_S, abort_memory_s: float = ABORT_MEMORY_S,
                 enroll: str | None = None) -> None:
        from party.enroll import DenyList

        self.config = config
        self.deny = DenyList(config.tls.ca.parent)
        self._enroll_listen = enroll or config.enroll
        self.enrollment: Any = None
        self._stop_watch = threading.Event()
        self._listen = listen or config.listen
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port: int | None = None
        self.rejected: dict[str, int] = {}
        self.grace_s = grace_s
        self.abort_memory_s = abort_memory_s
        self._incs: dict[str, int] = {}  # the live (or reconnecting) incarnation of each party
        self._timers: dict[str, threading.Timer] = {}
        self._aborts: dict[str, tuple[float, int, bytes]] = {}  # src -> (time, inc, frame)

    def start(self) -> Router:
        tls = self.config.tls
        creds = grpc.ssl_server_credentials(
            [(read_tls(tls.router_key, "[tls].router_key"), read_tls(tls.router_cert, "[tls].router_cert"))],
            root_certificates=read_tls(tls.ca, "[tls].ca"),
            require_client_auth=True,
        )
        n = len(self.config.parties)
        self._server, self.port = bind_server(
            "tessera.Router", {"Connect": grpc.stream_stream_rpc_method_handler(self._connect)},
            self._listen, creds, name="router", workers=2 * n + 8, max_rpcs=2 * n + 4,
            options=SERVER_OPTIONS, hint=": the address is in use (another router?) or not local")
        if self._enroll_listen:
            from party.enroll import EnrollmentServer

            try:
                self.enrollment = EnrollmentServer(self.config, self._enroll_listen).start()
            except ConfigError:
                self._server.stop(0)
                self._server = None
                raise
        self._server.start()
        self._stop_watch.clear()
        threading.Thread(target=self._watch_deny_list, daemon=True, name="router-deny").start()
        log.info("router for %r listening on %s (port %d)", self.config.name, self._listen, self.port)
        return self

    def _watch_deny_list(self) -> None:
        """Drop the live links of parties revoked while connected (checked every second)."""
        stamp = self.deny.stamp()
        while not self._stop_watch.wait(1.0):
            try:
                now = self.deny.stamp()
                if now == stamp:
                    continue
                stamp = now
                with self._lock:
                    links = list(self._links.values())
                for link in links:
                    why = self.deny.denies(link.name, link.serial)
                    if why:
                        log.warning("dropping party %r: %s", link.name, why)
                        self._abort(link, grpc.StatusCode.PERMISSION_DENIED,
                                    f"certificate of {link.name!r} refused: {why}")
            except Exception:  # a bad deny-list file must not stop the router
                log.exception("reading the deny list %s failed", self.deny.path)

    def stop(self, grace_s: float = 1.0) -> None:
        self._stop_watch.set()
        if self.enrollment is not None:
            self.enrollment.stop()
            self.enrollment = None
        with self._lock:
            links = list(self._links.values())
            timers = list(self._timers.values())
            self._timers.clear()
        for t in timers:
            t.cancel()
        bye = make_frame({"k": "shutdown", "msg": "the router shut down"})
        for link in links:  # tell every party first: they fail at once instead of reconnecting
            with contextlib.suppress(queue.Full):
                link.out.put_nowait(bye)
            with contextlib.suppress(queue.Full):
                link.out.put_nowait(_CLOSE)
        deadline = time.monotonic() + 1.0
        while any(not ln.out.empty() for ln in links) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._server is not None:
            self._server.stop(grace_s).wait(grace_s + 1)
            self._server = None

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    @property
    def online(self) -> list[str]:
        with self._lock:
            return sorted(self._links)

    # -- one stream per party --------------------------------------------------------------
    def _reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1

    def _connect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        auth = context.auth_context()
        cns = auth.get("x509_common_name") or []
        name = cns[0].decode() if cns else ""
        if name not in self.config.parties:
            self._reject("unknown identity")
            log.warning("refused connection from identity %r: not a party of %r", name, self.config.name)
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate identity {name!r} is not a party of federation {self.config.name!r}")
        from party.enroll import peer_serial

        serial = peer_serial(context)
        try:
            why = self.deny.denies(name, serial)
        except ConfigError as e:  # an unreadable deny list refuses everyone: fail closed
            why = str(e)
        if why:
            self._reject("revoked")
            log.warning("refused connection from %r: %s", name, why)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"certificate of {name!r} refused: {why}")
        md = dict(context.invocation_metadata() or ())
        try:
            inc = int(md.get(INC_METADATA, ""))
        except ValueError:  # a client that does not say: a new incarnation each time
            inc = int.from_bytes(os.urandom(6), "little")
        link = _Link(name, inc, context, serial)
        now = time.monotonic()
        with self._lock:
            old = self._links.get(name)
            self._links[name] = link
            prev_inc = self._incs.get(name)
            self._incs[name] = inc
            timer = self._timers.pop(name, None)
            others = [ln for ln in self._links.values() if ln is not link]
            # parties within their reconnect grace count as online: they keep their incarnation
            welcome_online = {n: i for n, i in self._incs.items() if n != name}
            if prev_inc != inc:
                self._aborts.pop(name, None)
            aborts = [f for src, (t, _i, f) in self._aborts.items()
                      if src != name and now - t < self.abort_memory_s]
        if timer is not None:
            timer.cancel()
        if old is not None:
            with contextlib.suppress(queue.Full):
                old.out.put_nowait(_CLOSE)
        replaced = prev_inc is not None and prev_inc != inc
        log.info("party %r connected from %s (incarnation %x%s)", name, context.peer(), inc,
                 f", replacing {prev_inc:x}" if replaced else
                 ", reconnected" if prev_inc == inc else "")
        for o in others:
            if replaced:
                self._send(o, make_frame({"k": "down", "src": name, "inc": prev_inc,
                                          "msg": "restarted (a new incarnation connected)"}))
            self._send(o, make_frame({"k": "up", "src": name, "inc": inc}))
        reader = threading.Thread(target=self._read, args=(link, requests), daemon=True,
                                  name=f"router-read-{name}")
        reader.start()
        try:
            yield make_frame({"k": "welcome", "online": welcome_online})
            yield from aborts
            while True:
                item = link.out.get()
                if item is _CLOSE:
                    return
                if isinstance(item, tuple):  # (status, message): abort this stream
                    context.abort(item[0], item[1])
                yield item
        finally:
            self._gone(link)

    def _read(self, link: _Link, requests: Iterator[bytes]) -> None:
        reason = "disconnected"
        try:
            for frame in requests:
                try:
                    header, _ = parse_frame(frame)
                except CodecError as e:
                    self._reject("malformed frame")
                    self._abort(link, grpc.StatusCode.INVALID_ARGUMENT, f"malformed frame: {e}")
                    return
                k = header["k"]
                if k == "bye":
                    link.said_bye = True
                    continue
                if k not in ("data", "ack", "nack", "abort"):
                    self._reject("bad kind")
                    self._abort(link, grpc.StatusCode.INVALID_ARGUMENT, f"parties may not send {k!r} frames")
                    return
                src, dst = header.get("src"), header.get("dst")
                if src != link.name:
                    self._reject("forged src")
                    log.warning("party %r sent a frame claiming src %r: refused", link.name, src)
                    self._abort(link, grpc.StatusCode.PERMISSION_DENIED,
                                f"frame src {src!r} does not match certificate identity {link.name!r}")
                    return
                if k == "abort":
                    self._on_abort(link, frame, header)
                    continue
                size = header.get("size")
                if k == "data" and (not isinstance(size, int) or size > self.config.max_message_bytes):
                    self._reject("oversized")
                    self._abort(link, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"message of {size} bytes over the federation cap "
                                f"{self.config.max_message_bytes}")
                    return
                if not isinstance(dst, str) or dst not in self.config.parties:
                    self._reject("unknown dst")
                    self._send(link, make_frame({"k": "error", "dst": str(dst), "tag": header.get("tag", ""),
                                                 "msg": f"party {dst!r} is not in federation {self.config.name!r}"}))
                    continue
                with self._lock:
                    target = self._links.get(dst)
                    current = self._links.get(link.name) is link
                if not current:
                    continue  # a superseded link of a party that reconnected: its sender resends
                if target is not None:
                    self._send(target, frame)
                # else: dropped here, held by its sender until dst connects (the delivery contract)
        except grpc.RpcError:
            reason = "connection lost"
        except Exception:  # a router bug must not take the federation down silently
            log.exception("router reader for %r failed", link.name)
            reason = "router error"
        with contextlib.suppress(queue.Full):
            link.out.put(_CLOSE, timeout=1)
        log.info("party %r %s", link.name, "said goodbye" if link.said_bye else reason)

    def _on_abort(self, link: _Link, frame: bytes, header: dict[str, Any]) -> None:
        log.info("party %r aborted session %r: %s", link.name, header.get("session"), header.get("msg"))
        with self._lock:
            self._aborts[link.name] = (time.monotonic(), link.inc, frame)
            others = [ln for ln in self._links.values() if ln is not link]
        for o in others:
            self._send(o, frame)

    def _abort(self, link: _Link, code: grpc.StatusCode, msg: str) -> None:
        link.out.put((code, msg))

    def _send(self, link: _Link, frame: bytes) -> None:
        while True:
            try:
                link.out.put(frame, timeout=1.0)
                return
            except queue.Full:
                if not link.context.is_active():
                    return

    def _gone(self, link: _Link) -> None:
        with self._lock:
            if self._links.get(link.name) is not link:
                return
            del self._links[link.name]
            if not link.said_bye and self.grace_s > 0:
                t = threading.Timer(self.grace_s, self._expire, args=(link.name, link.inc))
                t.daemon = True
                self._timers[link.name] = t
                t.start()
                return
        self._announce_down(link.name, link.inc, "disconnected" if link.said_bye else "connection lost")

    def _expire(self, name: str, inc: int) -> None:
        with self._lock:
            if name in self._links or self._incs.get(name) != inc:
                return
            self._timers.pop(name, None)
        self._announce_down(name, inc, f"connection lost (no reconnect within {self.grace_s:g} s)")

    def _announce_down(self, name: str, inc: int, why: str) -> None:
        with self._lock:
            if name in self._links:
                return
            if self._incs.get(name) == inc:
                del self._incs[name]
            others = list(self._links.values())
        for o in others:
            self._send(o, make_frame({"k": "down", "src": name, "inc": inc, "msg": why}))


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("party.router", "Run a federation's router.")
    cli.add_federation(ap, party=False)
    ap.add_argument("--listen", help="override [federation].listen, e.g. 0.0.0.0:50051")
    ap.add_argument("--enroll", help="serve join-token enrollment on this address, e.g. 0.0.0.0:50052 "
                                     "(overrides [federation].enroll)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return cli.run("party.router", lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    router = Router(load_federation(args.config), listen=args.listen, enroll=args.enroll).start()
    stop = threading.Event()

    def _sig(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)
    print(f"router for {router.config.name!r} on port {router.port}; Ctrl-C stops it", flush=True)
    stop.wait()
    router.stop()
    print("router stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
