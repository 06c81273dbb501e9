"""The horizontal-FL launchers of the README, each as real processes over gRPC with mTLS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(module: str, tmp_path: Path, *extra: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--workdir", str(tmp_path), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.grpc
@pytest.mark.slow
def test_flower_tutorial_port_runs_as_processes(tmp_path: Path) -> None:
    log = run("examples.flower_tutorial.run_local", tmp_path)
    assert "MNIST" in log  # no CIFAR-10 copy here: it says it runs on MNIST


@pytest.mark.grpc
@pytest.mark.slow
def test_three_banks_with_secure_aggregation(tmp_path: Path) -> None:
    log = run("examples.banks.run_local", tmp_path)
    summary = json.loads(next(ln for ln in log.splitlines() if '"secure_agg"' in ln).split("] ", 1)[-1])
    assert summary["rounds"] == 2
    # every round went through SecAgg+ with all three banks (not "skipped"/"aborted"/None)
    rounds = json.loads((tmp_path / "out" / "history.json").read_text())["rounds"]
    assert [r["secure_agg"] for r in rounds] == [{"survivors": 3, "dropped": {}}] * 2
    assert summary["secure_agg"] == rounds[-1]["secure_agg"] and summary["test_auc"] > 0.6
