"""Flower's examples/quickstart-pytorch app (imports changed, data local) under ``python -m hfl run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "quickstart_pytorch_app"


def test_only_the_imports_name_hfl() -> None:
    for name in ("client_app.py", "server_app.py"):
        text = (APP / "pytorchexample" / name).read_text()
        assert "flwr" not in text
        assert [line for line in text.splitlines() if "hfl" in line] == [
            line for line in text.splitlines() if line.startswith("from hfl.")]


@pytest.mark.slow
def test_runs_in_simulation_and_saves_the_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_") or k == "TESSERA_DATA"}
    env.update(PYTHONPATH=str(ROOT), TESSERA_APP_LIMIT="100")
    proc = subprocess.run(
        [sys.executable, "-m", "hfl", "run", str(APP), "--simulation", "--num-supernodes", "2",
         "--run-config", "num-server-rounds=1 fraction-evaluate=1.0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "[ROUND 1/1]" in out and "ServerApp-side Evaluate Metrics" in out
    assert "Aggregated ClientApp-side Evaluate Metrics" in out and "eval_acc" in out
    assert (tmp_path / "final_model.pt").stat().st_size > 200_000  # Net's 62k float32 parameters
