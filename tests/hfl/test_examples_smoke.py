"""The HFL examples run end to end in their --smoke form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mnist_fedavg_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.mnist_fedavg import run_local

    assert run_local.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert '"rounds_run": 2' in out and "test accuracy" in out


@pytest.mark.slow
@pytest.mark.grpc
def test_banks_smoke_secure_aggregation_over_grpc(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "examples.banks.run_local", "--smoke",
                        "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=280)
    assert p.returncode == 0, p.stdout + p.stderr
    assert '"secure_agg": {"survivors": 3, "dropped": {}}' in p.stdout
    assert (tmp_path / "out" / "history.png").is_file()
    assert (tmp_path / "out" / "checkpoints" / "latest.json").is_file()
