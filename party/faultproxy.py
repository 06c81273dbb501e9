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

Example::

    with FaultProxy(target=("127.0.0.1", router_port)) as px:
        config = dataclasses.replace(config, router=px.address)
        px.set_latency(0.05)
        ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from types import TracebackType

__all__ = ["FaultProxy", "ProxyStats", "Stopped", "sigstop"]

#: Bytes read from a socket at a time.
CHUNK = 64 << 10
#: A direction stops reading once this many bytes are held (delayed, stalled or
#: waiting for bandwidth); TCP flow control then pushes back on the sender.
MAX_HELD = 8 << 20
#: The longest ``select`` sleeps when nothing is due (the loop is woken for commands anyway).
IDLE_S = 1.0
#: Token-bucket depth: this many seconds' worth of bytes, but at least ``MIN_BURST``.
BURST_S = 0.01
MIN_BURST = 16 << 10

log = logging.getLogger(__name__)

_LINGER_RST = struct.pack("ii", 1, 0)


@dataclasses.dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what a :class:`FaultProxy` has done so far."""

    bytes_to_target: int = 0  #: bytes forwarded client -> target
    bytes_to_client: int = 0  #: bytes forwarded target -> client
    connections: int = 0  #: client connections accepted
    resets: int = 0  #: connections reset by a fault (reset_now / reset_after)
    open: int = 0  #: connections currently open


class _Pipe:
    """One direction of one connection: bytes read from ``src``, held, then written to ``dst``."""

    __slots__ = ("blocked", "done", "dst", "eof", "held", "last_due", "queue", "src",
                 "stamp", "to_target", "tokens")

    def __init__(self, src: socket.socket, dst: socket.socket, to_target: bool) -> None:
        self.src = src
        self.dst = dst
        self.to_target = to_target
        # (due time, data); data None is the end of stream (shut down dst's write side).
        self.queue: deque[tuple[float, memoryview | None]] = deque()
        self.held = 0  # bytes in queue
        self.last_due = 0.0  # keeps due times non-decreasing, so order survives latency changes
        self.eof = False  # src sent FIN: read no more
        self.done = False  # FIN passed on to dst
        self.blocked = False  # dst's send buffer is full: wait for it to become writable
        self.tokens = 0.0
        self.stamp = time.monotonic()

    def wants_read(self) -> bool:
        return not self.eof and self.held < MAX_HELD


class _Conn:
    __slots__ = ("client", "connected", "down", "server", "up")

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.connected = False  # the non-blocking connect to the target has completed
        self.up = _Pipe(client, server, to_target=True)
        self.down = _Pipe(server, client, to_target=False)


def _parse_target(target: tuple[str, int] | str) -> tuple[str, int]:
    if isinstance(target, str):
        host, sep, digits = target.rpartition(":")
        if not sep or not digits.isdigit():
            raise ValueError(f"target must be (host, port) or 'host:port', got {target!r}")
        return host.strip("[]") or "127.0.0.1", int(digits)
    host, port = target
    return host, int(port)


class FaultProxy:
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

    # -- internals -------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            self._wake_w.send(b"\0")

    def _command(self, name: str, arg: object) -> None:
        with self._lock:
            self._commands.append((name, arg))
        self._wake()

    def _run(self) -> None:
        sel = self._sel
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop:
                timeout = self._step()
                for key, mask in sel.select(timeout):
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock is self._wake_r:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                    else:
                        self._on_event(sock, mask)  # type: ignore[arg-type]
        except BaseException:
            log.exception("fault proxy on port %d failed; closing it", self.port)
            raise
        finally:
            self._close_all()

    def _step(self) -> float:
        """Run commands, forward what is due; return how long select may sleep."""
        now = time.monotonic()
        with self._lock:
            commands, self._commands = self._commands, []
            rate = self._rate
            stall_until = self._stall_until
            if stall_until is not None and now >= stall_until:
                self._stall_until = stall_until = None
        for name, arg in commands:
            if name == "reset_after":
                self._budget = arg  # type: ignore[assignment]
                if self._budget == 0:
                    self._reset_all()
            elif name == "reset_now":
                self._reset_all()
                arg.set()  # type: ignore[attr-defined]
            elif name == "heal":
                self._budget = None
                for c in self._conns:
                    for p in (c.up, c.down):
                        p.queue = deque((0.0, d) for _, d in p.queue)
                        p.last_due = 0.0
        stalled = stall_until is not None
        timeout = IDLE_S if not stalled else min(IDLE_S, max(0.0, stall_until - now))  # type: ignore[operator]
        for c in list(self._conns):
            if c not in self._conns:  # reset by reset_after while pumping an earlier one
                continue
            for p in (c.up, c.down):
                if rate is not None:
                    burst = max(rate * BURST_S, MIN_BURST)
                    p.tokens = min(burst, p.tokens + (now - p.stamp) * rate)
                p.stamp = now
                if stalled or p.blocked or not p.queue or (p.to_target and not c.connected):
                    continue
                wait = self._pump(c, p, now, rate)
                if wait is not None:
                    timeout = min(timeout, wait)
                if c not in self._conns:  # reset or failed during the pump
                    break
            if c in self._conns and c.up.done and c.down.done:
                self._drop(c, rst=False)
        for c in self._conns:
            self._register(c)
        return max(0.0, timeout)

    def _pump(self, c: _Conn, p: _Pipe, now: float, rate: float | None) -> float | None:
        """Write p's due chunks to p.dst; return seconds until more could go (None: not by time)."""
        while p.queue:
            due, data = p.queue[0]
            if due > now:
                return due - now
            if data is None:
                p.queue.popleft()
                with contextlib.suppress(OSError):
                    p.dst.shutdown(socket.SHUT_WR)
                p.done = True
                return None
            n = len(data)
            if rate is not None:
                if p.tokens < min(n, max(rate * BURST_S, MIN_BURST) / 2):
                    return (min(n, max(rate * BURST_S, MIN_BURST) / 2) - p.tokens) / rate
                n = min(n, int(p.tokens))
            if self._budget is not None:
                n = min(n, self._budget)
            try:
                sent = p.dst.send(data[:n])
            except (BlockingIOError, InterruptedError):
                p.blocked = True
                return None
            except OSError:
                self._drop(c, rst=True)  # the other end went away: pass the reset on
                return None
            self._account(p, sent)
            if sent == len(data):
                p.queue.popleft()
            else:
                p.queue[0] = (due, data[sent:])
            p.held -= sent
            if rate is not None:
                p.tokens -= sent
            if self._budget is not None:
                self._budget -= sent
                if self._budget <= 0:
                    self._budget = None
                    self._reset_all()
                    return None
            if sent < n:
                p.blocked = True
                return None
        return None

    def _account(self, p: _Pipe, n: int) -> None:
        key = "bytes_to_target" if p.to_target else "bytes_to_client"
        with self._lock:
            self._stats[key] += n

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            client.setblocking(False)
            server = socket.socket(self._family, socket.SOCK_STREAM)
            server.setblocking(False)
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, server)
            with self._lock:
                self._stats["connections"] += 1
                self._conns.append(conn)
            self._owner[client.fileno()] = conn
            self._owner[server.fileno()] = conn
            err = server.connect_ex(self._target)
            if err == 0:
                conn.connected = True
            elif err not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                self._drop(conn, rst=True)
                continue
            self._register(conn)

    def _on_event(self, sock: socket.socket, mask: int) -> None:
        c = self._owner.get(sock.fileno())
        if c is None:
            return
        is_client = sock is c.client
        if mask & selectors.EVENT_WRITE:
            if not is_client and not c.connected:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._drop(c, rst=True)  # the target refused: refuse the client too
                    return
                c.connected = True
            else:
                (c.down if is_client else c.up).blocked = False
        if mask & selectors.EVENT_READ:
            p = c.up if is_client else c.down
            if not p.wants_read():
                return
            try:
                data = sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(c, rst=True)
                return
            now = time.monotonic()
            with self._lock:
                latency = self._latency
            due = p.last_due = max(now + latency, p.last_due)
            if data:
                p.queue.append((due, memoryview(data)))
                p.held += len(data)
            else:
                p.queue.append((due, None))
                p.eof = True

    def _register(self, c: _Conn) -> None:
        want_client = (selectors.EVENT_READ if c.up.wants_read() else 0) | (
            selectors.EVENT_WRITE if c.down.blocked else 0)
        want_server = (selectors.EVENT_READ if c.connected and c.down.wants_read() else 0) | (
            selectors.EVENT_WRITE if (not c.connected or c.up.blocked) else 0)
        for sock, want in ((c.client, want_client), (c.server, want_server)):
            fd = sock.fileno()
            have = self._registered.get(fd, 0)
            if want == have:
                continue
            if not want:
                self._sel.unregister(sock)
                del self._registered[fd]
            elif not have:
                self._sel.register(sock, want)
                self._registered[fd] = want
            else:
                self._sel.modify(sock, want)
                self._registered[fd] = want

    def _reset_all(self) -> None:
        for c in list(self._conns):
            self._drop(c, rst=True, fault=True)

    def _drop(self, c: _Conn, *, rst: bool, fault: bool = False) -> None:
        """Close both sockets of ``c``; ``rst`` sends a TCP reset instead of a FIN.

        ``fault``: a reset we inject, counted in ``stats.resets`` before the RST goes out.
        """
        with self._lock:
            if c not in self._conns:
                return
            self._conns.remove(c)
            self._stats["resets"] += fault
        for sock in (c.client, c.server):
            fd = sock.fileno()
            if fd < 0:
                continue
            if self._registered.pop(fd, 0):
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._sel.unregister(sock)
            self._owner.pop(fd, None)
            if rst:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            sock.close()

    def _close_all(self) -> None:
        for c in list(self._conns):
            self._drop(c, rst=False)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()


# -- a frozen peer -----------------------------------------------------------------------------
def _proc_state(pid: int) -> str | None:
    """The state letter in /proc/<pid>/stat ('T' = stopped), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


class Stopped:
    """A process stopped by :func:`sigstop`; :meth:`resume` (or leaving ``with``) continues it."""

    def __init__(self, pid: int, seconds: float | None) -> None:
        self.pid = pid
        self._lock = threading.Lock()
        self._resumed = False
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 1.0
        while _proc_state(pid) not in ("T", "t", None, "Z", "X") and time.monotonic() < deadline:
            time.sleep(0.005)  # SIGSTOP is asynchronous: return once the kernel says stopped
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.resume)
            self._timer.daemon = True
            self._timer.start()

    @property
    def resumed(self) -> bool:
        return self._resumed

    def resume(self) -> None:
        """SIGCONT the process (once; a process that has gone is ignored)."""
        with self._lock:
            if self._resumed:
                return
            self._resumed = True
        if self._timer is not None and threading.current_thread() is not self._timer:
            self._timer.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)

    def __enter__(self) -> Stopped:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.resume()


def sigstop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | int,
            seconds: float | None) -> Stopped:
    """Freeze a process (SIGSTOP) and continue it (SIGCONT) after ``seconds``, in a daemon timer.

    ``proc`` is a :class:`subprocess.Popen` or a pid. Returns once the process is
    stopped (on Linux, as /proc reports it). Use it as a function (resumes by
    itself) or as a context manager, which always resumes the process on exit
    even if the timer has not fired yet; ``seconds=None`` waits for that exit
    (or :meth:`Stopped.resume`).
    """
    pid = proc if isinstance(proc, int) else proc.pid
    return Stopped(pid, seconds)
