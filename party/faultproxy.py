"""A user-space TCP proxy that injects network faults, for tests.

Why it exists: the usual tool, the kernel's netem qdisc (``tc qdisc add ... netem``),
is not available on the machines these tests run on (no ``sch_netem`` module, no
``CAP_NET_ADMIN``). This module does the same in-process instead: put a
:class:`FaultProxy` between a party and the router (dial ``px.address`` instead of
the router's address) and the connection gets

* added one-way latency, per direction (:meth:`FaultProxy.set_latency`);
* a bandwidth cap per direction, a token bucket (:meth:`FaultProxy.set_bandwidth`);
* TCP resets in the middle of a message (:meth:`FaultProxy.reset_after`,
  :meth:`FaultProxy.reset_now`), sent as a real RST (``SO_LINGER`` 0);
* a stall: nothing is forwarded for a while, bytes are held, not lost, and the
  connection stays open (:meth:`FaultProxy.stall`).

The proxy forwards raw bytes, so TLS (and therefore gRPC over mutual TLS) passes
through untouched. It uses only the standard library: one daemon thread runs a
``selectors`` loop for the listening socket and every connection; it sleeps in
``select`` until a socket is ready or the next held chunk is due, never spins.
Every fault can be changed while connections are live; :meth:`FaultProxy.heal`
clears them all at once.

:func:`sigstop` covers a different fault, "the peer process is frozen": it
SIGSTOPs a child process and SIGCONTs it after a while (and always on exit).

This module holds the public face (:class:`FaultProxy`'s constructor and fault
controls, :class:`ProxyStats`); the thread's forwarding loop is in
:mod:`party.faultproxy_loop`, :func:`sigstop` in :mod:`party.freeze`. Both are
re-exported here.

Example::

    with FaultProxy(target=("127.0.0.1", router_port)) as px:
        config = dataclasses.replace(config, router=px.address)
        px.set_latency(0.05)
        ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import selectors
import socket
import threading
import time
from types import TracebackType

# the loop's settings and pieces, defined here before the split: importable from here still
from party.faultproxy_loop import _LINGER_RST as _LINGER_RST
from party.faultproxy_loop import BURST_S as BURST_S
from party.faultproxy_loop import CHUNK as CHUNK
from party.faultproxy_loop import IDLE_S as IDLE_S
from party.faultproxy_loop import MAX_HELD as MAX_HELD
from party.faultproxy_loop import MIN_BURST as MIN_BURST
from party.faultproxy_loop import _Conn, _ForwardLoop
from party.faultproxy_loop import _Pipe as _Pipe
from party.faultproxy_loop import log as log  # the same logger, "party.faultproxy"
from party.freeze import Stopped, sigstop
from party.freeze import _proc_state as _proc_state

__all__ = ["FaultProxy", "ProxyStats", "Stopped", "sigstop"]


@dataclasses.dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what a :class:`FaultProxy` has done so far."""

    bytes_to_target: int = 0  #: bytes forwarded client -> target
    bytes_to_client: int = 0  #: bytes forwarded target -> client
    connections: int = 0  #: client connections accepted
    resets: int = 0  #: connections reset by a fault (reset_now / reset_after)
    open: int = 0  #: connections currently open


def _parse_target(target: tuple[str, int] | str) -> tuple[str, int]:
    if isinstance(target, str):
        host, sep, digits = target.rpartition(":")
        if not sep or not digits.isdigit():
            raise ValueError(f"target must be (host, port) or 'host:port', got {target!r}")
        return host.strip("[]") or "127.0.0.1", int(digits)
    host, port = target
    return host, int(port)


class FaultProxy(_ForwardLoop):
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` and injects faults on demand.

    ``listen_port=0`` (the default) takes a free port from the OS; see :attr:`port` and
    :attr:`address`. The socket is bound at construction; :meth:`start` (or entering the
    ``with`` block) starts forwarding and :meth:`close` (or leaving the block) stops the
    thread and closes every socket. Faults apply to every connection, live and future;
    ``latency`` and ``bandwidth`` may also be given here.

    Connection set-up itself is not delayed (only the bytes are), and a connection
    to a target that refuses it is reset towards the client.
    """

    def __init__(
        self,
        target: tuple[str, int] | str,
        *,
        listen_port: int = 0,
        latency: float = 0.0,
        bandwidth: float | None = None,
    ) -> None:
        host, port = _parse_target(target)
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self._family, self._target = info[0], info[4]
        self._lock = threading.Lock()
        self._latency = 0.0
        self._rate: float | None = None  # bytes/s
        self._stall_until: float | None = None
        self._commands: list[tuple[str, object]] = []
        self._stats = {"bytes_to_target": 0, "bytes_to_client": 0, "connections": 0, "resets": 0}
        self._conns: list[_Conn] = []
        self._owner: dict[int, _Conn] = {}  # fileno -> connection
        self._registered: dict[int, int] = {}  # fileno -> selector events
        self._budget: int | None = None  # reset_after: bytes left before resetting (loop-owned)
        self._stop = False
        self._sel = selectors.DefaultSelector()
        self._thread: threading.Thread | None = None
        self._closed = False

        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.bind(("127.0.0.1", listen_port))
            self._listener.listen(64)
            self._listener.setblocking(False)
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            self._listener.close()
            raise
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.set_latency(latency)
        self.set_bandwidth(bandwidth)

    # -- public API ------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, what a client dials instead of the target."""
        return f"127.0.0.1:{self.port}"

    @property
    def stats(self) -> ProxyStats:
        """Bytes forwarded each way, connections accepted and reset, connections open."""
        with self._lock:
            return ProxyStats(**self._stats, open=len(self._conns))

    def start(self) -> FaultProxy:
        """Start forwarding (idempotent); returns ``self``."""
        if self._closed:
            raise RuntimeError("the proxy is closed")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"faultproxy-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (joined, up to ``timeout_s``) and close every socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop = True
        if self._thread is not None:
            self._wake()
            self._thread.join(timeout_s)
        else:
            self._close_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk by ``seconds`` in each direction (a round trip gains 2×).

        Chunks are timestamped when read and released when due, so throughput is not
        limited by the latency; their order is kept. Applies to bytes read from now on.
        """
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, got {seconds}")
        with self._lock:
            self._latency = float(seconds)
        self._wake()

    def set_bandwidth(self, bits_per_s: float | None) -> None:
        """Cap each direction at ``bits_per_s`` (a token bucket); ``None`` removes the cap."""
        if bits_per_s is not None and bits_per_s <= 0:
            raise ValueError(f"bandwidth must be > 0 bits/s or None, got {bits_per_s}")
        with self._lock:
            self._rate = None if bits_per_s is None else bits_per_s / 8.0
        self._wake()

    def reset_after(self, nbytes: int) -> None:
        """Reset every live connection once ``nbytes`` more bytes have been forwarded.

        The count is over both directions and all connections, and forwarding is cut
        exactly at ``nbytes``, so the reset lands in the middle of whatever is in flight.
        It fires once; connections made afterwards work normally.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._command("reset_after", int(nbytes))

    def reset_now(self, timeout_s: float = 5.0) -> None:
        """Reset (RST) every live connection; returns once done (if the proxy is running)."""
        done = threading.Event()
        self._command("reset_now", done)
        if self._thread is not None and self._thread.is_alive() \
                and threading.current_thread() is not self._thread:
            done.wait(timeout_s)

    def stall(self, seconds: float | None) -> None:
        """Forward nothing, either way, for ``seconds`` (``None``: until :meth:`heal`).

        Connections stay open and bytes are held (up to ``MAX_HELD`` per direction,
        then TCP pushes back), not lost; forwarding resumes by itself afterwards.
        """
        with self._lock:
            self._stall_until = float("inf") if seconds is None else time.monotonic() + seconds
        self._wake()

    def heal(self) -> None:
        """Clear every fault at once: latency, bandwidth cap, stall, a pending reset_after.

        Bytes held for latency are released at once (in order).
        """
        with self._lock:
            self._latency = 0.0
            self._rate = None
            self._stall_until = None
        self._command("heal", None)

    # -- commands to the loop (the loop itself: party.faultproxy_loop) --------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            self._wake_w.send(b"\0")

    def _command(self, name: str, arg: object) -> None:
        with self._lock:
            self._commands.append((name, arg))
        self._wake()
