"""The federation router: every party dials it with one bidirectional gRPC stream.

    python -m party.router --config fed.toml

Mutual TLS: a party's identity is the common name of its client certificate
(signed by the federation CA). The router refuses a frame whose ``src`` differs
from that identity (PERMISSION_DENIED), a frame for a party not in the
federation (an error frame back to the sender), a malformed frame
(INVALID_ARGUMENT) and a declared message size over the cap (RESOURCE_EXHAUSTED),
each before forwarding or allocating anything. Frames are forwarded unchanged.

When a party's stream ends (closed, killed, network lost), every other party
gets a ``down`` notice, so nobody waits for a dead peer until its timeout.

What the router learns: who talks to whom, when, and how much (tags and sizes);
payloads are opaque to it only in the sense that protocols encrypt or mask what
must stay secret — the router is not trusted with anything a protocol leaves in
the clear.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from party.chunking import FRAME_LIMIT, make_frame, parse_frame
from party.config import FederationConfig, load_federation
from party.errors import CodecError, ConfigError

log = logging.getLogger("party.router")

METHOD = "/tessera.Router/Connect"
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", FRAME_LIMIT),
    ("grpc.max_send_message_length", FRAME_LIMIT),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),  # 0: never GOAWAY a party for its keepalive pings (long CPU-bound phases send no data)
    ("grpc.max_concurrent_streams", 1024),
]
_CLOSE = object()


def read_tls(path: Any, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror}") from None


class _Link:
    """One connected party: its outbound queue and its stream's context."""

    def __init__(self, name: str, context: grpc.ServicerContext) -> None:
        self.name = name
        self.context = context
        self.out: queue.Queue[Any] = queue.Queue(maxsize=64)


class Router:
    """Routes frames between the parties of one federation."""

    def __init__(self, config: FederationConfig, *, listen: str | None = None) -> None:
        self.config = config
        self._listen = listen or config.listen
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port: int | None = None
        self.rejected: dict[str, int] = {}
        # Frames for parties that have not connected yet (start order is free).
        self._pending: dict[str, list[bytes]] = {}
        self._pending_bytes: dict[str, int] = {}
        self._seen: set[str] = set()
        self.max_pending_bytes = config.max_message_bytes + (64 << 20)  # one largest message fits

    def start(self) -> Router:
        tls = self.config.tls
        creds = grpc.ssl_server_credentials(
            [(read_tls(tls.router_key, "[tls].router_key"), read_tls(tls.router_cert, "[tls].router_cert"))],
            root_certificates=read_tls(tls.ca, "[tls].ca"),
            require_client_auth=True,
        )
        n = len(self.config.parties)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2 * n + 8, thread_name_prefix="router"),
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=2 * n + 4,
        )
        handler = grpc.method_handlers_generic_handler(
            "tessera.Router", {"Connect": grpc.stream_stream_rpc_method_handler(self._connect)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_secure_port(self._listen, creds)
        if not self.port:
            raise ConfigError(f"router cannot listen on {self._listen}")
        self._server.start()
        log.info("router for %r listening on %s (port %d)", self.config.name, self._listen, self.port)
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        with self._lock:
            links = list(self._links.values())
        for link in links:
            with contextlib.suppress(queue.Full):
                link.out.put_nowait(_CLOSE)
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
        link = _Link(name, context)
        with self._lock:
            old = self._links.get(name)
            self._links[name] = link
            self._seen.add(name)
            others = [ln for ln in self._links.values() if ln is not link]
            pending = self._pending.pop(name, [])
            self._pending_bytes.pop(name, None)
        if old is not None:
            with contextlib.suppress(queue.Full):
                old.out.put_nowait(_CLOSE)
        log.info("party %r connected from %s", name, context.peer())
        for o in others:
            self._send(o, make_frame({"k": "up", "src": name}))
        reader = threading.Thread(target=self._read, args=(link, requests), daemon=True,
                                  name=f"router-read-{name}")
        reader.start()
        try:
            # Welcome first, then what was buffered before this party connected (yielded here,
            # not queued: the queue is bounded and nobody drains it before this loop runs).
            yield make_frame({"k": "welcome", "online": self.online})
            yield from pending
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
                if header["k"] != "data":
                    self._reject("bad kind")
                    self._abort(link, grpc.StatusCode.INVALID_ARGUMENT, f"parties may not send {header['k']!r} frames")
                    return
                src, dst = header.get("src"), header.get("dst")
                if src != link.name:
                    self._reject("forged src")
                    log.warning("party %r sent a frame claiming src %r: refused", link.name, src)
                    self._abort(link, grpc.StatusCode.PERMISSION_DENIED,
                                f"frame src {src!r} does not match certificate identity {link.name!r}")
                    return
                size = header.get("size")
                if not isinstance(size, int) or size > self.config.max_message_bytes:
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
                    if target is None and dst not in self._seen:
                        used = self._pending_bytes.get(dst, 0) + len(frame)
                        if used <= self.max_pending_bytes:
                            self._pending.setdefault(dst, []).append(frame)
                            self._pending_bytes[dst] = used
                            continue
                if target is None:
                    why = "disconnected" if dst in self._seen else "not connected yet (router buffer full)"
                    self._send(link, make_frame({"k": "down", "src": dst, "msg": why}))
                    continue
                self._send(target, frame)
        except grpc.RpcError:
            reason = "connection lost"
        except Exception:  # a router bug must not take the federation down silently
            log.exception("router reader for %r failed", link.name)
            reason = "router error"
        with contextlib.suppress(queue.Full):
            link.out.put(_CLOSE, timeout=1)
        log.info("party %r %s", link.name, reason)

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
            others = list(self._links.values())
        for o in others:
            self._send(o, make_frame({"k": "down", "src": link.name, "msg": "disconnected"}))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m party.router", description="Run a federation's router.")
    ap.add_argument("--config", required=True, help="federation TOML")
    ap.add_argument("--listen", help="override [federation].listen, e.g. 0.0.0.0:50051")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        router = Router(load_federation(args.config), listen=args.listen).start()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
