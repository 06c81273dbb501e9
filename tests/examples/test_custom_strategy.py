"""examples/custom_strategy: a FedAvg subclass saving the model each round, under hfl (and Flower)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from examples.custom_strategy.run import run

ROOT = Path(__file__).resolve().parents[2]


def test_saves_the_global_model_every_round_and_learns(tmp_path: Path) -> None:
    out = run(tmp_path / "a", rounds=3)
    assert out["framework"] == "hfl"
    assert out["saved"] == [f"round-{r}-weights.npz" for r in (1, 2, 3)]
    losses = [v for _, v in out["losses_distributed"]]
    assert [r for r, _ in out["losses_distributed"]] == [1, 2, 3] and losses[0] > losses[1] > losses[2]
    # each file holds that round's global model: the next round starts from it
    w = [np.load(tmp_path / "a" / f"round-{r}-weights.npz")["arr_0"] for r in (1, 2, 3)]
    assert not np.allclose(w[0], w[1]) and np.allclose(w[2], out["final_weights"])


def test_the_same_strategy_under_hfl_simulate_gives_the_same_model(tmp_path: Path) -> None:
    a = run(tmp_path / "a", rounds=2)
    b = run(tmp_path / "b", rounds=2, simulate=True)
    np.testing.assert_allclose(a["final_weights"], b["final_weights"], rtol=1e-12)


def _flower_python() -> str | None:
    if os.environ.get("FLWR_PYTHON"):
        return os.environ["FLWR_PYTHON"]
    return sys.executable if importlib.util.find_spec("flwr") is not None else None


def test_unchanged_under_flower_gives_the_same_numbers(tmp_path: Path) -> None:
    py = _flower_python()
    if py is None:
        pytest.skip("needs flwr==1.42.0 (pip install '.[bench]', or FLWR_PYTHON=<python with flwr>)")
    env = dict(os.environ, FL_FRAMEWORK="flwr", PYTHONPATH=str(ROOT))
    proc = subprocess.run([py, "-m", "examples.custom_strategy.run", "--out", str(tmp_path / "f")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flower = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = run(tmp_path / "h", rounds=3)
    assert flower["framework"] == "flwr" and flower["saved"] == ours["saved"]
    np.testing.assert_allclose(flower["final_weights"], ours["final_weights"], rtol=1e-12)
    np.testing.assert_allclose([v for _, v in flower["losses_distributed"]],
                               [v for _, v in ours["losses_distributed"]], rtol=1e-12)
