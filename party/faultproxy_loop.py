"""The forwarding loop of :class:`party.faultproxy.FaultProxy`: sockets, held bytes, faults.

One daemon thread runs :meth:`_ForwardLoop._run`, a ``selectors`` loop over the
listening socket, a wake-up socket pair and both sockets of every connection. Each
direction of a connection is a :class:`_Pipe`: bytes read from one socket are
stamped with the time they are due (latency), held, and written to the other socket
when due and when the token bucket (bandwidth) allows; at most ``MAX_HELD`` bytes
are held per direction, then that socket is not read and TCP pushes back. The loop
sleeps in ``select`` until a socket is ready or the next held chunk is due, never
spins. A reset closes both sockets with ``SO_LINGER`` 0, so the peer sees a real RST.
The proxy's state is created by ``FaultProxy.__init__``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import struct
import threading
import time
from collections import deque

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

log = logging.getLogger("party.faultproxy")

_LINGER_RST = struct.pack("ii", 1, 0)


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


class _ForwardLoop:
    """What the proxy's thread does: accept, read, hold, forward when due, reset."""

    # set by FaultProxy.__init__
    port: int
    _family: socket.AddressFamily
    _target: tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]
    _lock: threading.Lock
    _latency: float
    _rate: float | None  # bytes/s
    _stall_until: float | None
    _commands: list[tuple[str, object]]
    _stats: dict[str, int]
    _conns: list[_Conn]
    _owner: dict[int, _Conn]  # fileno -> connection
    _registered: dict[int, int]  # fileno -> selector events
    _budget: int | None  # reset_after: bytes left before resetting (loop-owned)
    _stop: bool
    _sel: selectors.BaseSelector
    _listener: socket.socket
    _wake_r: socket.socket
    _wake_w: socket.socket

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

