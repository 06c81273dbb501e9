"""The FTL example end to end (PSI, training, scoring as separate processes over gRPC + mTLS)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.grpc
def test_run_local_smoke(tmp_path: Path, data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.transfer.run_local", "--smoke", "--overlap", "0.1",
         "--workdir", str(tmp_path), "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[a] PSI: 3000 own rows, 200 shared with b" in proc.stdout
    assert "AUC on B's 1800 customers A never saw" in proc.stdout
    scores = pd.read_csv(tmp_path / "b_scores.csv")
    assert len(scores) == 2000 and int(scores["in_overlap"].sum()) == 200
    assert (tmp_path / "a-ckpt" / "ftl-guest.pt").exists()
    assert (tmp_path / "b-ckpt" / "ftl-host.pt").exists()
