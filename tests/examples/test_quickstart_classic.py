"""The classic Flower quick start (examples/quickstart_classic), changed only in its import,
runs three rounds as separate processes with no certificate, no TOML and no federation
environment variable: the development federation (party.devfed) does the rest; a client
with its own state directory joins with a join token the server printed.

The files run as they are but for one substitution: the port (8080 becomes a free port,
so parallel test runs cannot collide). The state directory is a temporary one
(``TESSERA_STATE_DIR``), as another user's home would be.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from party.local import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "quickstart_classic"

pytestmark = [pytest.mark.grpc, pytest.mark.slow]


def copy_example(dst: Path, port: int, *, flower: bool = False) -> Path:
    """The example's files in ``dst`` with ``port`` for 8080 (and ``flwr`` for ``hfl``)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("client.py", "server.py", "task.py"):
        text = (EXAMPLE / name).read_text().replace("8080", str(port))
        if flower:
            text = text.replace("import hfl as fl", "import flwr as fl")
        (dst / name).write_text(text)
    return dst


def clean_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TESSERA_") or k == "TESSERA_DATA"}
    env["TESSERA_STATE_DIR"] = str(state)
    env["PYTHONPATH"] = str(ROOT)  # tessera itself, as `pip install -e .` would
    env.setdefault("TESSERA_DATA", str(ROOT / "data"))
    return env


def _two_free_ports() -> int:
    """A free port whose successor is free too (the dev server's enrollment endpoint)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def test_classic_quickstart_zero_config(tmp_path: Path) -> None:
    """Two clients with zero configuration, and a third "from another machine" (its own
    state directory, nothing copied) that joins with a token the server prints on request."""
    port = _two_free_ports()
    work = copy_example(tmp_path / "app", port)
    # the only difference from Flower's files is the import (and our port swap)
    for name in ("client.py", "server.py"):
        ours = (EXAMPLE / name).read_text()
        assert "federation" not in ours and "TESSERA" not in ours
        assert ours.count("import hfl as fl") == 1
    state = tmp_path / "state"
    env = clean_env(state)
    server = subprocess.Popen([sys.executable, "server.py"], cwd=work,
                              env={**env, "TESSERA_JOIN_TOKENS": "client_9"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs: list[subprocess.Popen[str]] = [server]
    try:
        assert server.stdout is not None
        head: list[str] = []
        token = None
        for line in server.stdout:  # until the server has printed the token
            head.append(line)
            m = re.search(r"join token for 'client_9' \(1 h, single use\): (tsr1\.\S+)", line)
            if m:
                token = m.group(1)
                break
        assert token, "".join(head)
        rest: list[str] = []
        reader = threading.Thread(target=lambda: rest.extend(server.stdout or ()), daemon=True)
        reader.start()
        other = tmp_path / "other-machine"
        envs = [env, env, {**clean_env(other), "TESSERA_JOIN_TOKEN": token}]
        clients = [subprocess.Popen([sys.executable, "client.py"], cwd=work, env=e,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for e in envs]
        procs += clients
        server.wait(timeout=240)
        reader.join(timeout=10)
        out = "".join(head + rest)
        couts = [c.communicate(timeout=90)[0] for c in clients]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert server.returncode == 0, out[-3000:]
    for c, cout in zip(clients, couts, strict=True):
        assert c.returncode == 0, cout[-3000:]
    # development mode, said once, naming what it trusts
    assert out.count("DEVELOPMENT MODE") == 1 and "trusts the local user account" in out, out
    # three rounds of fit and evaluate, no failures
    assert "3/3" in out and "failed=0" in out and "failed=1" not in out, out[-3000:]
    local = sorted(re.search(r"development mode, party '(client_\d+)'", c).group(1)  # type: ignore[union-attr]
                   for c in couts[:2])
    assert len(set(local)) == 2 and "client_9" not in local, couts
    assert "joined 'dev-root' as 'client_9'" in couts[2] or re.search(
        r"joined 'dev-[^']+' as 'client_9'", couts[2]), couts[2]
    # the per-user state: 0700, keys 0600 (mutual TLS certificates)
    dev = state / "dev"
    assert stat.S_IMODE(dev.stat().st_mode) == 0o700
    keys = sorted(p.name for p in dev.glob("*.key"))
    assert {"ca.key", "router.key", "server.key", f"{local[0]}.key", f"{local[1]}.key"} <= set(keys)
    assert all(stat.S_IMODE((dev / k).stat().st_mode) == 0o600 for k in keys)
    # the other machine holds its own key and certificate only: no dev federation, no CA key
    joined = list((other / "joined").glob("*/client_9.key"))
    assert len(joined) == 1 and stat.S_IMODE(joined[0].stat().st_mode) == 0o600
    assert not (other / "dev").exists() and not list(other.rglob("ca.key"))
    shutil.rmtree(tmp_path / "app")
