"""The classic Flower quick start (examples/quickstart_classic), changed only in its import,
runs three rounds as three processes with no certificate, no TOML and no federation
environment variable: the development federation (party.devfed) does the rest.

The files run as they are but for one substitution: the port (8080 becomes a free port,
so parallel test runs cannot collide). The state directory is a temporary one
(``TESSERA_STATE_DIR``), as another user's home would be.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
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


def test_classic_quickstart_zero_config(tmp_path: Path) -> None:
    port = free_port()
    work = copy_example(tmp_path / "app", port)
    # the only difference from Flower's files is the import (and our port swap)
    for name in ("client.py", "server.py"):
        ours = (EXAMPLE / name).read_text()
        assert "federation" not in ours and "TESSERA" not in ours
        assert ours.count("import hfl as fl") == 1
    state = tmp_path / "state"
    env = clean_env(state)
    server = subprocess.Popen([sys.executable, "server.py"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clients = [subprocess.Popen([sys.executable, "client.py"], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    try:
        out, _ = server.communicate(timeout=240)
        couts = [c.communicate(timeout=60)[0] for c in clients]
    finally:
        for p in (server, *clients):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert server.returncode == 0, out[-3000:]
    for c, cout in zip(clients, couts, strict=True):
        assert c.returncode == 0, cout[-3000:]
    # development mode, said once, naming what it trusts
    assert out.count("DEVELOPMENT MODE") == 1 and "trusts the local user account" in out, out
    # three rounds of fit and evaluate
    assert "3/3" in out and "ok=2, failed=0" in out, out[-3000:]
    names = sorted(re.search(r"party '(client_\d+)'", c).group(1) for c in couts)  # type: ignore[union-attr]
    assert len(set(names)) == 2, couts
    # the per-user state: 0700, keys 0600, no plaintext anywhere (mutual TLS certificates)
    dev = state / "dev"
    assert stat.S_IMODE(dev.stat().st_mode) == 0o700
    keys = sorted(p.name for p in dev.glob("*.key"))
    assert {"ca.key", "router.key", "server.key", f"{names[0]}.key", f"{names[1]}.key"} <= set(keys)
    assert all(stat.S_IMODE((dev / k).stat().st_mode) == 0o600 for k in keys)
    shutil.rmtree(tmp_path / "app")
