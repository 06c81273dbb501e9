"""The soak benchmark, tiny: 3 alignments (one with a kill -9 and restart) on one router, 3 HFL rounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.grpc]


def test_soak_tiny(tmp_path: Path) -> None:
    # seed 12 plans one kill, of the first party to start, before its peer starts (the kill
    # and restart are timed from that party's start); random timing is what the full soak covers
    cmd = [sys.executable, "-m", "benchmarks.soak", "--minutes", "0", "--runs", "3",
           "--rows", "300", "--kill-fraction", "0.34", "--hfl-rounds", "8", "--seed", "12",
           "--run-deadline-s", "60", "--workdir", str(tmp_path / "soak")]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    recs = [json.loads(ln) for ln in lines]  # stdout holds JSON figures only
    fig = {r["figure"]: r for r in recs}
    assert set(recs[0]) == {"figure", "value", "unit", "conditions"}
    val = {k: r["value"] for k, r in fig.items()}
    why = f"{val}\n--- stderr ---\n{p.stderr[-4000:]}"
    assert val["soak_runs"] == 3, why
    assert val["soak_wrong_results"] == 0, why
    assert val["soak_hung_runs"] == 0, why
    assert val["soak_failed_runs"] == 0, why
    assert val["soak_kills"] >= 1, why
    assert val["soak_hfl_rounds_completed"] == 8, why
    hfl = fig["soak_hfl_rounds_completed"]["conditions"]
    assert hfl["killed"] and hfl["restarted"] and hfl["bit_identical_to_replay"], why
    assert val["soak_router_rss_mb_start"] > 0 and val["soak_router_rss_mb_end"] > 0, why
    assert {"loadavg_start", "loadavg_end", "rows", "seed"} <= set(fig["soak_runs"]["conditions"])
    assert p.returncode == 0, why
