"""party.faultproxy: a user-space TCP proxy injecting latency, bandwidth caps, resets and stalls."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from party import Tag
from party.grpc_transport import connect
from party.testing import FaultProxy, grpc_federation, sigstop

pytestmark = [pytest.mark.grpc, pytest.mark.timeout(60)]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while data := sock.recv(1 << 16):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1; yields its port."""
    srv = _Server(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture
def px(echo: int) -> Iterator[FaultProxy]:
    with FaultProxy(target=("127.0.0.1", echo)) as p:
        yield p
    assert p._thread is not None and not p._thread.is_alive()


def dial(px: FaultProxy, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def echo_all(s: socket.socket, payload: bytes) -> tuple[bytes, BaseException | None]:
    """Send payload (then FIN) from a thread, read until EOF; return (received, sender's error)."""
    err: list[BaseException] = []

    def send() -> None:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    buf = bytearray()
    while chunk := s.recv(1 << 16):
        buf += chunk
    t.join(10)
    return bytes(buf), err[0] if err else None


def timed_echo(px: FaultProxy, payload: bytes) -> float:
    """Seconds to echo ``payload`` through ``px`` on a new connection (checked unchanged)."""
    with dial(px) as s:
        t0 = time.monotonic()
        got, err = echo_all(s, payload)
        elapsed = time.monotonic() - t0
    assert err is None and got == payload
    return elapsed


def test_address_and_bind(px: FaultProxy) -> None:
    assert px.port > 0
    assert px.address == f"127.0.0.1:{px.port}"
    assert px._listener.getsockname()[0] == "127.0.0.1"


def test_bytes_pass_unchanged_both_ways(px: FaultProxy) -> None:
    payload = os.urandom(5 << 20)
    with dial(px) as s:
        got, err = echo_all(s, payload)
    assert err is None
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
    st = px.stats
    assert st.bytes_to_target == st.bytes_to_client == len(payload)
    assert st.connections == 1 and st.resets == 0


def test_latency_does_not_serialise_throughput(px: FaultProxy) -> None:
    # 5 MB is ~80 chunks of 64 KiB each way: delaying them one after another would take > 8 s.
    px.set_latency(0.05)
    payload = os.urandom(5 << 20)
    elapsed = timed_echo(px, payload)
    assert 0.1 <= elapsed < 2.0, elapsed


def test_latency_round_trip(px: FaultProxy) -> None:
    lat, slack = 0.1, 0.08
    with dial(px) as s:
        s.sendall(b"warm-up")
        recv_exact(s, 7)  # the connection to the target is up
        px.set_latency(lat)  # while the connection is live
        rtts = []
        for i in range(3):
            msg = f"ping {i}".encode()
            t0 = time.monotonic()
            s.sendall(msg)
            assert recv_exact(s, len(msg)) == msg
            rtts.append(time.monotonic() - t0)
        assert min(rtts) >= 2 * lat, rtts
        assert max(rtts) <= 2 * lat + slack, rtts  # each way adds lat, plus a little
        px.set_latency(0.0)
        t0 = time.monotonic()
        s.sendall(b"fast")
        assert recv_exact(s, 4) == b"fast"
        assert time.monotonic() - t0 < 0.05


def test_bandwidth_cap(px: FaultProxy) -> None:
    px.set_bandwidth(10e6)  # 2 MB at 10 Mbit/s: ~1.6 s (both directions run at once)
    payload = os.urandom(2_000_000)
    elapsed = timed_echo(px, payload)
    assert 1.2 <= elapsed <= 4.0, elapsed


def test_bandwidth_cap_removed_live(px: FaultProxy) -> None:
    px.set_bandwidth(1e6)  # 125 kB/s: 2 MB would take 16 s
    payload = os.urandom(2_000_000)
    threading.Timer(0.5, px.set_bandwidth, args=(None,)).start()
    elapsed = timed_echo(px, payload)
    assert 0.4 <= elapsed < 3.0, elapsed


def test_reset_after_cuts_mid_transfer_then_new_connections_work(px: FaultProxy) -> None:
    px.reset_after(300_000)
    payload = os.urandom(4 << 20)
    with dial(px) as s:
        got = bytearray()
        err: BaseException | None = None
        try:
            received, err = echo_all(s, payload)
            got += received
        except (ConnectionResetError, BrokenPipeError) as e:
            err = e
    # either the reader saw the RST, or it saw an early EOF (and the sender the reset)
    assert len(got) < 300_000
    assert err is not None or len(got) < len(payload)
    st = px.stats
    assert st.resets == 1
    assert st.bytes_to_target + st.bytes_to_client == 300_000  # cut exactly there

    small = os.urandom(200_000)
    with dial(px) as s:
        got2, err2 = echo_all(s, small)
    assert err2 is None and got2 == small
    assert px.stats.resets == 1 and px.stats.connections == 2


def test_reset_now_sends_rst(px: FaultProxy) -> None:
    with dial(px) as s:
        s.sendall(b"hello")
        assert recv_exact(s, 5) == b"hello"
        px.reset_now()
        with pytest.raises(ConnectionResetError):
            s.recv(10)
    assert px.stats.resets == 1 and px.stats.open == 0


def test_stall_holds_bytes_then_heal_delivers_them(px: FaultProxy) -> None:
    payload = os.urandom(1 << 20)
    with dial(px) as s:
        s.sendall(b"up?")
        assert recv_exact(s, 3) == b"up?"
        before = px.stats
        px.stall(30.0)
        sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        sender.start()
        s.settimeout(1.5)
        with pytest.raises(TimeoutError):
            s.recv(1)  # nothing arrives during the stall
        assert px.stats.bytes_to_target == before.bytes_to_target  # nor reaches the target
        assert px.stats.open == 1
        t0 = time.monotonic()
        px.heal()
        s.settimeout(5.0)
        got = recv_exact(s, len(payload))
        assert time.monotonic() - t0 < 3.0
        sender.join(5)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_stall_heals_by_itself(px: FaultProxy) -> None:
    with dial(px) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        px.stall(0.5)
        t0 = time.monotonic()
        s.sendall(b"after")
        assert recv_exact(s, 5) == b"after"
        assert 0.45 <= time.monotonic() - t0 < 2.0


def test_refused_target_resets_client() -> None:
    with socket.socket() as tmp:
        tmp.bind(("127.0.0.1", 0))
        dead = tmp.getsockname()[1]  # nothing listens here once tmp closes
    with FaultProxy(target=f"127.0.0.1:{dead}") as p:
        # the RST may even beat connect() back to the client
        with contextlib.suppress(ConnectionResetError), dial(p) as s:
            assert s.recv(10) == b""
        deadline = time.monotonic() + 5
        while p.stats.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.stats.connections == 1 and p.stats.open == 0 and p.stats.resets == 0


def test_close_joins_thread_and_closes_sockets(echo: int) -> None:
    p = FaultProxy(target=("127.0.0.1", echo)).start()
    s = dial(p)
    s.sendall(b"abc")
    assert recv_exact(s, 3) == b"abc"
    thread = p._thread
    p.close()
    assert thread is not None and not thread.is_alive() and thread.daemon
    assert p._listener.fileno() == -1
    s.settimeout(2)
    with contextlib.suppress(ConnectionResetError):
        assert s.recv(10) == b""  # the proxy closed its side
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, ok: str, timeout: float = 2.0) -> str:
    deadline = time.monotonic() + timeout
    while (st := _state(pid)) not in ok and time.monotonic() < deadline:
        time.sleep(0.01)
    return st


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def test_sigstop_context_manager_resumes_on_exit(sleeper: subprocess.Popen[bytes]) -> None:
    with sigstop(sleeper, 30.0) as stopped:
        assert _state(sleeper.pid) == "T"
        time.sleep(0.2)
        assert _state(sleeper.pid) == "T"  # still stopped: the timer is 30 s away
    assert stopped.resumed
    assert _wait_state(sleeper.pid, "SR") in "SR"


def test_sigstop_timer_resumes(sleeper: subprocess.Popen[bytes]) -> None:
    t0 = time.monotonic()
    sigstop(sleeper, 0.3)
    assert _state(sleeper.pid) == "T"
    assert _wait_state(sleeper.pid, "SR") in "SR"
    assert time.monotonic() - t0 >= 0.25


def test_sigstop_resumes_on_exception(sleeper: subprocess.Popen[bytes]) -> None:
    with pytest.raises(RuntimeError), sigstop(sleeper, None):
        assert _state(sleeper.pid) == "T"
        raise RuntimeError("test body failed")
    assert _wait_state(sleeper.pid, "SR") in "SR"


def test_grpc_message_through_proxy_with_latency() -> None:
    with grpc_federation(["alice", "bob"]) as (config, _router):
        host, _, port = config.router.rpartition(":")
        with FaultProxy(target=(host, int(port)), latency=0.05) as p:
            alice = connect(dataclasses.replace(config, router=p.address), "alice")
            bob = connect(config, "bob")
            try:
                msg = np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8)
                t0 = time.monotonic()
                alice.send("bob", Tag("big"), msg)
                got = bob.recv("alice", Tag("big"), timeout_s=30)
                elapsed = time.monotonic() - t0
                assert isinstance(got, np.ndarray) and np.array_equal(got, msg)
                assert elapsed >= 0.05  # the bytes went through the delay
                assert p.stats.bytes_to_target >= 3 << 20
                assert p.stats.connections >= 1 and p.stats.resets == 0
            finally:
                alice.close()
                bob.close()
