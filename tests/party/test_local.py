"""party.local.LocalFederation: certificates, federation file, processes, first failure stops all."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from party.config import load_federation
from party.local import LaunchError, LocalFederation

ROOT = Path(__file__).resolve().parents[2]
CHILD = "tests.party.local_child"
PARTIES = {"bank": "active", "fintech": "passive"}


def fed(tmp_path: Path, **kw: object) -> LocalFederation:
    return LocalFederation(PARTIES, out=tmp_path, router=False, cwd=ROOT, echo=None, **kw)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_writes_certificates_and_a_federation_file(tmp_path: Path) -> None:
    with fed(tmp_path, timeout_s=42) as f:
        cfg = load_federation(f.config)
        assert sorted(cfg.parties) == ["bank", "fintech"]
        assert cfg.router == f"127.0.0.1:{f.port}" and cfg.timeout_s == 42
        assert (f.certs / "bank.key").stat().st_mode & 0o777 == 0o600
        assert cfg.party("fintech").cert == f.certs / "fintech.pem"


def test_first_failure_stops_everything_and_is_named(tmp_path: Path) -> None:
    with fed(tmp_path) as f:
        sleeper = f.start("fintech", CHILD, "sleep", 60)
        bad = f.start("bank", CHILD, "exit", 3, "bank: no such file data.csv")
        t = time.monotonic()
        with pytest.raises(LaunchError, match=r"bank exited with code 3: bank: no such file "
                                              r"data.csv \(log: .*bank.log\)"):
            f.wait([sleeper, bad], timeout_s=60)
        assert time.monotonic() - t < 15  # not the sleeper's 60 s
        assert sleeper.returncode is not None and f.running() == []
    assert "no such file" in (tmp_path / "logs" / "bank.log").read_text()


def test_time_limit_stops_everything(tmp_path: Path) -> None:
    with fed(tmp_path) as f:
        c = f.start("bank", CHILD, "sleep", 60)
        with pytest.raises(LaunchError, match=r"bank did not finish within 0\.5 s"):
            f.wait([c], timeout_s=0.5)
        assert c.returncode is not None


def test_a_daemon_that_exits_is_a_failure(tmp_path: Path) -> None:
    with fed(tmp_path) as f:
        f.start("router", CHILD, "exit", 0, "bye", daemon=True)
        c = f.start("bank", CHILD, "sleep", 60)
        with pytest.raises(LaunchError, match="router exited while the federation was running"):
            f.wait([c], timeout_s=30)


def test_waits_on_the_port_not_a_sleep(tmp_path: Path) -> None:
    with fed(tmp_path) as f:
        import socket

        f.start("server", CHILD, "listen", f.port, listens=True)
        with socket.create_connection(("127.0.0.1", f.port), timeout=1):
            pass  # listening as soon as start() returned
    with fed(tmp_path / "2") as f, \
            pytest.raises(LaunchError, match="bank exited with code 2 before it listened"):
        f.start("bank", CHILD, "exit", 2, "no", listens=True)


def test_leaving_the_block_stops_children_even_on_sigterm(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as ei, fed(tmp_path) as f:
        c = f.start("bank", CHILD, "sleep", 60)
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. a test runner's timeout kills the launcher
        time.sleep(5)
    assert ei.value.code == 128 + signal.SIGTERM
    assert not alive(c.proc.pid)
    assert signal.getsignal(signal.SIGTERM) is not None  # the old handler is back


@pytest.mark.grpc
def test_starts_the_router_and_waits_for_it(tmp_path: Path) -> None:
    from party.grpc_transport import connect

    with LocalFederation(PARTIES, out=tmp_path, echo=None) as f:
        cfg = load_federation(f.config)
        with connect(cfg, "bank") as bank, connect(cfg, "fintech") as fin:
            from party import Tag

            bank.send("fintech", Tag("t"), "hi")
            assert fin.recv("bank", Tag("t"), timeout_s=10) == "hi"
        assert f.running() == ["router"]
    assert f.running() == []
