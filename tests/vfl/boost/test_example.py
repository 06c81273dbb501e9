"""The SecureBoost example end to end: router + two party processes per step, gRPC with mTLS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.grpc
def test_example_runs_woe_training_and_scoring_from_saved_halves(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "examples.secureboost.run_local", "--out", str(tmp_path),
                        "--rows", "500", "--trees", "2", "--depth", "2", "--scheme", "plaintext"],
                       cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((tmp_path / "bank" / "summary.json").read_text())
    scored = json.loads((tmp_path / "bank" / "scores.json").read_text())
    assert scored["auc"] == pytest.approx(summary["joint"]["auc"])  # the saved halves score as trained
    for f in ("bank/report/roc.png", "bank/report/report.json", "bank/bank_woe.csv", "fintech/fintech_woe.csv",
              "bank/bank.boost.json", "fintech/fintech.boost.json"):
        assert (tmp_path / f).stat().st_size > 0, f
    half = json.loads((tmp_path / "bank" / "bank.boost.json").read_text())
    assert "fintech" in half["passives"] and "cuts" not in json.dumps(half["trees"])  # no passive thresholds
