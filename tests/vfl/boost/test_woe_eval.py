"""Federated WOE/IV (numeric and categorical) and the evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from party.errors import ConfigError
from party.testing import run_parties
from tests.vfl.boost.helpers import credit
from vfl.boost import Binner
from vfl.boost.crypto import PlainCipher
from vfl.boost.evaluation import auc, ks, lift_gains, write_report
from vfl.boost.protocol import drive
from vfl.boost.woe import (
    WoeMasked,
    WoePassive,
    merge_small_bins,
    run_woe_active,
    run_woe_passive,
    woe_active,
    woe_table,
    write_table,
)


def _passive_table(rows: int = 600) -> tuple[pd.DataFrame, Binner, np.ndarray, np.ndarray]:
    d = credit(rows)
    df = pd.DataFrame(d["xp"], columns=[f"x{i}" for i in range(10)])
    df["segment"] = np.where(d["xp"][:, 0] > 0, "retail", np.where(d["xp"][:, 1] > 0, "sme", "corporate"))
    binner = Binner.fit(df, max_bin=8, categorical=["segment"])
    return df, binner, binner.transform(df), d["y"]


def test_the_passive_party_gets_the_table_a_centralized_run_would_give(ou) -> None:
    _df, binner, bins, y = _passive_table(300)
    expected = woe_table(bins, binner, y, min_bin_rows=30)  # what a party holding both would compute
    w = WoePassive(bins, binner, share_iv=False)
    seen = []

    class Spy:
        def handle(self, msg):
            r = w.handle(msg)
            seen.append(r)
            return r

    ivs = drive(woe_active(y, ["fintech"], ou, min_bin_rows=30), {"fintech": Spy()})
    assert w.table == expected
    seg = [r for r in w.table if r["feature"] == "segment"]
    assert {r["range"] for r in seg} >= {"retail"} and all(r["kind"] == "categorical" for r in seg)
    assert all(r["count"] >= 30 for r in w.table)
    assert ivs == {"fintech": {}}  # IVs stay with the passive party unless it shares them
    # the label holder saw masked counts only: far larger than any count of 300 rows
    masked = next(r for r in seen if isinstance(r, WoeMasked))
    opened = ou.decrypt_ints(masked.counts)
    assert min(opened) > 2**40


def test_woe_over_the_runner_and_shared_ivs(tmp_path: Path) -> None:
    _df, binner, bins, y = _passive_table()
    out = run_parties({
        "bank": lambda p: run_woe_active(p, ["fintech"], y, scheme="plaintext", min_bin_rows=40, timeout_s=30),
        "fintech": lambda p: run_woe_passive(p, "bank", bins, binner, share_iv=True, timeout_s=30),
    }, timeout_s=60)
    table = out["fintech"]
    ivs = {r["feature"]: r["iv"] for r in table}
    assert out["bank"]["fintech"] == pytest.approx(ivs)
    assert max(ivs, key=ivs.get) in {"x5", "x6", "x7"}  # the repayment-status columns carry the signal
    write_table(table, str(tmp_path / "fintech_woe"))
    assert (tmp_path / "fintech_woe.csv").read_text().startswith("feature,kind,bin,range,count,events")
    assert json.loads((tmp_path / "fintech_woe.json").read_text())[0]["feature"] == "x0"


def test_merge_small_bins_and_bad_labels() -> None:
    codes = np.array([0, 0, 1, 2, 2, 2, 3], dtype=np.int8)
    new, groups = merge_small_bins(codes, 4, 2)
    assert np.bincount(new).min() >= 2 and groups == [[0], [1, 2, 3]]
    _df, binner, bins, y = _passive_table(100)
    with pytest.raises(ConfigError, match="0/1"):
        drive(woe_active(y * 3, ["fintech"], PlainCipher()), {"fintech": WoePassive(bins, binner)})


def test_evaluation_report_matches_sklearn_and_writes_pngs(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500).astype(float)
    s = np.round(y * 0.3 + rng.random(500), 2)  # ties on purpose
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert ks(y, s) == pytest.approx(float(np.max(tpr - fpr)), abs=1e-12)
    lg = lift_gains(y, s)
    assert lg["gains"][-1] == pytest.approx(1.0) and lg["cum_lift"][0] > 1.0
    r = write_report(y, s, tmp_path, name="secureboost", importance={"own_features": {}})
    for f in ("report.json", "roc.png", "ks.png", "lift.png", "gains.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report.json").read_text())["auc"] == pytest.approx(r["auc"])
    with pytest.raises(ConfigError, match="both classes"):
        auc(np.ones(5), np.arange(5.0))


def test_the_report_cli_joins_any_models_scores_to_the_labels_by_id(tmp_path: Path) -> None:
    from vfl.boost.evaluation import main

    rng = np.random.default_rng(1)
    ids = [f"c{i:04d}" for i in range(300)]
    y = rng.integers(0, 2, 300)
    pd.DataFrame({"id": ids, "y": y, "x": rng.random(300)}).to_csv(tmp_path / "bank.csv", index=False)
    score = y * 0.4 + rng.random(300)
    pd.DataFrame({"id": ids[::-1], "score": score[::-1]}).iloc[:200].to_csv(tmp_path / "scores.csv", index=False)
    assert main(["--scores", str(tmp_path / "scores.csv"), "--labels", str(tmp_path / "bank.csv"),
                 "--name", "split NN", "--out", str(tmp_path / "rep")]) == 0
    r = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert r["rows"] == 200 and r["auc"] == pytest.approx(auc(y[100:], score[100:]))
    assert main(["--scores", str(tmp_path / "scores.csv"), "--labels", str(tmp_path / "bank.csv"),
                 "--label-column", "default", "--out", str(tmp_path / "rep2")]) == 2
