"""``python -m examples.bank_fintech.run_local --model boost --smoke``, as a user runs it: PSI of
the two raw files, the WOE/IV binning report, SecureBoost over OU with the evaluation report,
and scoring in two new processes from the saved halves, over the router with mTLS."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from examples.bank_fintech import task

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.grpc, pytest.mark.slow]


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_boost_smoke_demo_psi_woe_training_report_and_rescoring(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "examples.bank_fintech.run_local", "--model", "boost",
                        "--smoke", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    bank, fintech = tmp_path / "bank", tmp_path / "fintech"

    # PSI: each input lacked a different 10%, the aligned files hold the same customers
    b_ids = [row["id"] for row in rows_of(bank / "bank_aligned.csv")]
    f_ids = [row["id"] for row in rows_of(fintech / "fintech_aligned.csv")]
    raw_b = {row["id"] for row in rows_of(bank / "bank.csv")}
    raw_f = {row["id"] for row in rows_of(fintech / "fintech.csv")}
    assert b_ids == f_ids and set(b_ids) == raw_b & raw_f and len(b_ids) < min(len(raw_b), len(raw_f))

    # the binning report: the bank's 13 features and the fintech's 10 (at the fintech only)
    bw, fw = rows_of(bank / "bank_woe.csv"), rows_of(fintech / "fintech_woe.csv")
    assert {w["feature"] for w in bw} == {f"x{i}" for i in range(13)}
    assert {w["feature"] for w in fw} == {f"x{i}" for i in range(10)}
    assert not (bank / "fintech_woe.csv").exists()
    shared = json.loads((bank / "fintech_iv_shared.json").read_text())  # the IVs the fintech shared
    assert shared == pytest.approx({w["feature"]: float(w["iv"]) for w in fw}, rel=1e-4)

    # training + evaluation report at the bank; the joint model clearly beats bank-only
    summary = json.loads((bank / "summary.json").read_text())
    assert summary["customers"] == len(b_ids)
    assert summary["joint"]["auc"] > summary["bank_only"]["auc"] + 0.02, summary
    rep = json.loads((bank / "report" / "report.json").read_text())
    assert rep["auc"] == pytest.approx(summary["joint"]["auc"])
    theirs = json.loads((fintech / "importance.json").read_text())  # per feature, at the fintech only
    total = rep["importance"]["passive_parties"]["fintech"]  # one total at the bank
    assert total["splits"] == sum(v["splits"] for v in theirs.values()) > 0
    assert total["gain"] == pytest.approx(sum(v["gain"] for v in theirs.values()))
    assert set(rep["importance"]["own_features"]) <= {f"x{i}" for i in range(13)}
    for png in ("roc", "ks", "lift", "gains"):
        assert (bank / "report" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    half = json.loads((bank / "bank.boost.json").read_text())
    assert half["passives"] == ["fintech"] and "cuts" not in json.dumps(half["trees"])

    # scoring in new processes from the saved halves reproduces the held-out AUC
    scored = json.loads((bank / "scores.json").read_text())
    assert scored["held_out"] and scored["auc"] == pytest.approx(summary["joint"]["auc"])
    lines = rows_of(bank / "scores.csv")
    test_ids = [sorted(b_ids)[i] for i in task.test_split(len(b_ids), seed=42)[1]]
    assert [row["id"] for row in lines] == test_ids and len(lines) == summary["test_rows"]
    assert 0 < min(float(row["score"]) for row in lines) < max(float(row["score"]) for row in lines) < 1
    out = r.stdout
    assert "binning report" in out and "from the saved halves" in out
    assert f"bank features only {summary['bank_only']['auc']:.4f}" in out
