"""The local development federation (party.devfed): private files, automatic client names,
still mutual TLS, and nobody but the user can enroll."""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from party import AuthenticationError, ConfigError, PartyUnavailable, Tag, devfed
from party.certs import init_certs
from party.grpc_transport import connect
from party.local import free_port
from party.router import Router

pytestmark = pytest.mark.grpc


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv(devfed.STATE_ENV, str(d))
    return d


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_made_once_private_and_reused(state: Path) -> None:
    cfg = devfed.ensure_dev_federation()
    d = state / "dev"
    assert cfg.tls.ca.parent == d and _mode(state) == 0o700 and _mode(d) == 0o700
    for key in d.glob("*.key"):
        assert _mode(key) == 0o600, key
    assert cfg.names("server") == ["server"] and len(cfg.names("client")) == devfed.DEV_CLIENTS
    ca = (d / "ca.pem").read_bytes()
    assert devfed.ensure_dev_federation().name == cfg.name
    assert (d / "ca.pem").read_bytes() == ca  # the same CA next time


def test_refuses_a_directory_other_users_can_enter(state: Path) -> None:
    devfed.ensure_dev_federation()
    os.chmod(state / "dev", 0o755)
    with pytest.raises(ConfigError, match="mode 755 lets other users in"):
        devfed.ensure_dev_federation()
    os.chmod(state / "dev", 0o700)
    os.chmod(state / "dev" / "ca.key", 0o644)
    with pytest.raises(ConfigError, match="mode 600"):
        devfed.ensure_dev_federation()


def test_client_names_are_unique_per_process(state: Path) -> None:
    cfg = devfed.ensure_dev_federation()
    a = devfed.claim_client(cfg)
    b = devfed.claim_client(cfg)
    assert a != b and {a, b} <= set(cfg.names("client"))
    # another process gets yet another name while this one holds its two
    code = ("from party import devfed; cfg = devfed.ensure_dev_federation(); "
            "print(devfed.claim_client(cfg))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=os.environ, timeout=60, check=True).stdout.strip()
    assert other not in (a, b)
    with pytest.raises(ConfigError, match="held by another process"):
        # a name held by a live process cannot be taken (the child is gone: free again)
        _hold = subprocess.Popen([sys.executable, "-c", code.replace(
            "print(devfed.claim_client(cfg))",
            "n = devfed.claim_client(cfg, 'client_9'); print(n, flush=True); import time; time.sleep(30)")],
            stdout=subprocess.PIPE, text=True, env=os.environ)
        try:
            assert _hold.stdout is not None and _hold.stdout.readline().strip() == "client_9"
            devfed.claim_client(cfg, "client_9")
        finally:
            _hold.kill()
            _hold.wait()
    devfed.release_client(a)
    devfed.release_client(b)


def test_a_token_name_is_never_claimed_locally(state: Path) -> None:
    from party.enroll import TokenStore

    cfg = devfed.ensure_dev_federation()
    TokenStore(cfg.tls.ca.parent).issue("client_0", 600, allowed=cfg.names())
    name = devfed.claim_client(cfg)
    assert name != "client_0"
    devfed.release_client(name)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a child as another user")
def test_another_user_cannot_enroll(state: Path, tmp_path: Path) -> None:
    import party.enroll  # noqa: F401  (imported before the fork: the child execs nothing)

    devfed.ensure_dev_federation()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become uid/gid 65534 (nobody) and try to enroll
        lines: list[str] = []
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                devfed.claim_client(devfed.ensure_dev_federation())
                lines.append("enrolled")
            except Exception as e:
                lines.append(f"{type(e).__name__} {e}")
            try:
                (state / "dev" / "ca.key").read_bytes()
                lines.append("read the CA key")
            except OSError as e:
                lines.append(f"read {type(e).__name__}")
        finally:
            os.write(wfd, "\n".join(lines).encode())
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        out = f.read()
    os.waitpid(pid, 0)
    # refused by our check (another user's directory) before the OS is even asked
    assert out.startswith("ConfigError") and ("belongs to another user" in out or
                                              "belongs to uid 0, not to you (uid 65534)" in out), out
    assert "read PermissionError" in out, out  # and the OS refuses the key itself
    assert "enrolled" not in out.split() and "read the CA key" not in out


def _tls_without_certificate_refused(port: int) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw) as t:
            t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return t.recv(100) == b""
    except (ssl.SSLError, OSError):
        return True


def test_still_mutual_tls(state: Path, tmp_path: Path) -> None:
    cfg = devfed.ensure_dev_federation()
    port = free_port()
    cfg = dataclasses.replace(cfg, router=f"127.0.0.1:{port}")
    name = devfed.claim_client(cfg)
    with Router(cfg, listen=f"127.0.0.1:{port}"):
        with connect(cfg, "server") as server, connect(cfg, name) as client:
            client.send("server", Tag("dev", "s"), "hi")
            assert server.recv(name, Tag("dev", "s"), timeout_s=10) == "hi"
        # plaintext HTTP/2 is refused at the TLS layer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            s.settimeout(5)
            try:
                reply = s.recv(100)
            except (ConnectionResetError, TimeoutError):
                reply = b""
            assert b"HTTP/2" not in reply and not reply.startswith(b"\x00\x00")
        # TLS without a client certificate does not get a stream
        assert _tls_without_certificate_refused(port)
        # another user's dev federation (another CA) cannot connect to ours
        other = init_certs(tmp_path / "other", ["client_1"])
        theirs = dataclasses.replace(cfg, tls=dataclasses.replace(cfg.tls, ca=other / "ca.pem"),
                                     parties={**cfg.parties, "client_1": dataclasses.replace(
                                         cfg.parties["client_1"], cert=other / "client_1.pem",
                                         key=other / "client_1.key")})
        with pytest.raises((PartyUnavailable, AuthenticationError)):
            connect(theirs, "client_1", connect_timeout_s=3)
    devfed.release_client(name)


def test_processes_starting_together_share_one_federation(state: Path) -> None:
    code = ("import hashlib; from party import devfed; cfg = devfed.ensure_dev_federation(); "
            "n = devfed.claim_client(cfg); "
            "print(n, hashlib.sha256(cfg.tls.ca.read_bytes()).hexdigest(), flush=True); "
            "import sys; sys.stdin.read()")  # hold the name until the test is done
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=os.environ) for _ in range(3)]
    try:
        lines = [p.stdout.readline().split() for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            p.communicate("", timeout=30)
    assert len({fp for _, fp in lines}) == 1, lines  # one CA, made once
    assert len({n for n, _ in lines}) == 3, lines  # three names
