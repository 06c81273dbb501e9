"""The transport demo: router and two parties as separate processes (`python -m party.router`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.grpc
def test_transport_demo_runs_three_processes(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.transport_demo.run_local", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "[bank] checksum matches" in out.stdout
    assert "both parties succeeded" in out.stdout
    assert (tmp_path / "certs" / "bank.key").stat().st_mode & 0o777 == 0o600
