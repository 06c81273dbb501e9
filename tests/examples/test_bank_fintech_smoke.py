"""The split NN's ``--smoke`` settings (``run_local.SMOKE_NN``) show the point: on the smoke
run's customers the joint model beats the bank alone by more than 0.02 test AUC, at several
seeds. In memory and in plaintext mode (HE mode gives the same AUC to 1e-4, see
``test_vfl_grpc``); the inputs are the demo's own (``make_inputs``), the PSI step replaced by
the intersection it computes, in the ID order both parties sort it into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.bank_fintech import run_local, task
from party.testing import run_parties
from vfl.split import auc
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> tuple[task.PartyTable, task.PartyTable]:
    work = tmp_path_factory.mktemp("smoke")
    for sub in ("bank", "fintech"):
        (work / sub).mkdir()
    bank_csv, fintech_csv = run_local.make_inputs(work, run_local.SMOKE_ROWS)
    b = task.read_table(bank_csv, label="y")
    f = task.read_table(fintech_csv)
    shared = set(b.ids) & set(f.ids)
    return (task.by_id(_keep(b, shared)), task.by_id(_keep(f, shared)))


def _keep(t: task.PartyTable, ids: set[str]) -> task.PartyTable:
    rows = [i for i, x in enumerate(t.ids) if x in ids]
    return task.PartyTable(ids=[t.ids[i] for i in rows], x=t.x[rows],
                           y=None if t.y is None else t.y[rows], columns=t.columns)


def smoke_aucs(b: task.PartyTable, f: task.PartyTable, seed: int) -> tuple[float, float]:
    assert b.ids == f.ids and b.y is not None
    s = run_local.SMOKE_NN
    tr, te = task.test_split(len(b.ids), seed=seed)
    pa, pf = task.Preprocessor().fit(b.x[tr]), task.Preprocessor().fit(f.x[tr])
    xa, xf, y = pa.transform(b.x), pf.transform(f.x), b.y
    cfg = TrainConfig(mode="plaintext", epochs=int(s["epochs"]), batch_size=int(s["batch_size"]),
                      val_fraction=s["val_fraction"], seed=seed)

    def bank(party: Any) -> Any:
        t = ActiveTrainer(party, ["fintech"], task.bank_model(xa.shape[1]), xa[tr], y[tr], config=cfg)
        res = t.fit()
        return t.predict(xa[te]), len(res.history)

    def fintech(party: Any) -> None:
        t = PassiveTrainer(party, "bank", task.fintech_model(xf.shape[1]), xf[tr], config=cfg)
        t.fit()
        t.predict(xf[te])

    prob, epochs = run_parties({"bank": bank, "fintech": fintech}, timeout_s=120)["bank"]
    assert epochs == cfg.epochs  # no early stopping in the smoke run
    alone = task.train_bank_only(xa[tr], y[tr], xa[te], epochs=cfg.epochs, batch_size=cfg.batch_size,
                                 lr=cfg.lr, seed=seed, val_fraction=cfg.val_fraction,
                                 patience=cfg.patience)
    return auc(y[te], prob), auc(y[te], alone)


@pytest.mark.parametrize("seed", [42, 1, 2])
def test_smoke_joint_model_beats_bank_only(aligned: tuple[task.PartyTable, task.PartyTable],
                                           seed: int) -> None:
    joint, alone = smoke_aucs(*aligned, seed)
    assert joint > alone + 0.02, (joint, alone)
    assert joint > 0.72


def test_bank_only_without_validation_runs_every_epoch_and_keeps_the_last(
        aligned: tuple[task.PartyTable, task.PartyTable]) -> None:
    b = aligned[0]
    assert b.y is not None
    x = task.Preprocessor().fit(b.x).transform(b.x)
    kw: dict[str, Any] = {"batch_size": 128, "lr": 3e-3, "seed": 0, "val_fraction": 0.0, "patience": 0}
    one = task.train_bank_only(x, b.y, x, epochs=1, **kw)
    four = task.train_bank_only(x, b.y, x, epochs=4, **kw)
    assert auc(b.y, four) > auc(b.y, one)  # patience 0 did not stop it after the first epoch


def test_sorted_by_id_whatever_the_order_psi_agreed_on() -> None:
    a = task.PartyTable(ids=["c", "a", "b"], x=np.array([[3.0], [1.0], [2.0]]),
                        y=np.array([1.0, 0.0, 1.0]), columns=["x0"])
    s = task.by_id(a)
    assert s.ids == ["a", "b", "c"] and s.x[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert s.y is not None and s.y.tolist() == [0.0, 1.0, 1.0]


def test_bank_writes_the_evaluation_report_of_the_he_model(data_dir: Path, tmp_path: Path) -> None:
    """bank.py's training (HE mode, over the in-memory network) leaves report_he/ next to
    report.json: the AUC/KS/curves report of the scores it computed on the held-out rows."""
    import json

    from tests.vfl.test_example_score import both, head_of, ok

    for who, name in (("bank", "guest"), ("fintech", "host")):
        head_of(data_dir / "fate" / f"default_credit_hetero_{name}.csv", tmp_path / f"{who}.csv", 200)
    ok(both(tmp_path, "train"))
    he = json.loads((tmp_path / "bank" / "report.json").read_text())["results"]["he"]
    rep = json.loads((tmp_path / "bank" / "report_he" / "report.json").read_text())
    assert rep["rows"] == 40 and rep["auc"] == pytest.approx(he["test_auc"], abs=1e-4)
    assert 0 <= rep["ks"] <= 1 and len(rep["gains"]) == 10  # (KS: max(TPR - FPR), vfl.metrics)
    for png in ("roc", "ks", "lift", "gains"):
        assert (tmp_path / "bank" / "report_he" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "fintech" / "report_he").exists()
