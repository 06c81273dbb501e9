"""Split training over the real gRPC router with mTLS, and the demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from party import Party, Role
from party.grpc_transport import connect
from party.testing import grpc_federation, run_parties
from vfl.split import default_active, default_passive
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def _train(data: dict[str, np.ndarray], mode: str, make_party: Any = None) -> np.ndarray:
    c = TrainConfig(mode=mode, epochs=1, batch_size=64, val_fraction=0.25, timeout_s=60)
    n = 200

    def bank(party: Party) -> np.ndarray:
        t = ActiveTrainer(party, ["fintech"], default_active(data["xa"].shape[1], hidden=8, d=4, k=3),
                          data["xa"][:n], data["y"][:n], config=c)
        t.fit()
        return t.predict(data["xa"][n:])

    def fintech(party: Party) -> None:
        t = PassiveTrainer(party, "bank", default_passive(data["xp"].shape[1], hidden=8, d=4),
                           data["xp"][:n], config=c)
        t.fit()
        t.predict(data["xp"][n:])

    roles = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}
    return run_parties({"bank": bank, "fintech": fintech}, roles=roles, make_party=make_party,
                       timeout_s=120)["bank"]


@pytest.mark.grpc
def test_he_training_over_grpc_mtls(data_dir: Path, tmp_path: Path) -> None:
    g = np.loadtxt(data_dir / "fate" / "default_credit_hetero_guest.csv", delimiter=",",
                   skiprows=1, max_rows=260)
    h = np.loadtxt(data_dir / "fate" / "default_credit_hetero_host.csv", delimiter=",",
                   skiprows=1, max_rows=260)
    data = {"xa": g[:, 2:], "y": g[:, 1], "xp": h[:, 1:]}
    roles = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}
    with grpc_federation(["bank", "fintech"], roles=roles, directory=tmp_path) as (config, _):
        over_grpc = _train(data, "he", make_party=lambda name: connect(config, name))
    in_memory = _train(data, "plaintext")
    np.testing.assert_allclose(over_grpc, in_memory, atol=1e-4)


@pytest.mark.grpc
@pytest.mark.slow
def test_demo_smoke_end_to_end(tmp_path: Path) -> None:
    """run_local: PSI, HE training of bank.py + fintech.py over the router, report, and scoring
    from the saved halves in new processes (bank.py/fintech.py --score)."""
    r = subprocess.run(
        [sys.executable, "-m", "examples.bank_fintech.run_local", "--smoke", "--no-compare",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "bank" / "report.json").read_text())
    he = report["results"]["he"]
    assert 0.5 < he["test_auc"] <= 1.0 and he["mb_sent"] > 0
    assert (tmp_path / "bank" / "bank_model_he.pt").is_file()
    assert (tmp_path / "fintech" / "fintech_model_he.pt").is_file()
    scored = json.loads((tmp_path / "bank" / "scores_he.json").read_text())  # step 3: --score
    assert scored["held_out"] and scored["rows"] == report["test_rows"]
    assert abs(scored["auc"] - he["test_auc"]) <= 2e-3
    assert "held-out AUC from the saved halves" in r.stdout
    aligned = (tmp_path / "bank" / "bank_aligned.csv").read_text().splitlines()
    assert report["customers"] == len(aligned) - 1 < 3000  # PSI dropped both parties' missing 10%
