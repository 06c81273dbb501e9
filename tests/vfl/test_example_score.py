"""bank.py / fintech.py: train and save, then ``--score`` from the saved halves (in memory)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.bank_fintech import bank, fintech
from party import InMemoryNetwork, Party, Role
from party.errors import ConfigError
from tests.vfl.test_trainer import ok, run
from vfl.trainer import TrainingInterrupted

ROWS = 300
ROLES = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}


def head_of(src: Path, dst: Path, rows: int) -> Path:
    with open(src) as fi, open(dst, "w") as fo:
        for i, line in enumerate(fi):
            if i > rows:
                break
            fo.write(line)
    return dst


def args_for(who: str, work: Path, *extra: str) -> Any:
    mod = bank if who == "bank" else fintech
    argv = ["--config", "unused.toml", "--party", who, "--data", str(work / f"{who}.csv"),
            "--out", str(work / who), "--timeout-s", "60", *extra]
    if who == "bank":
        argv += ["--epochs", "1", "--batch-size", "64"]
    return mod.build_parser().parse_args(argv)


def both(work: Path, what: str, *extra: str) -> dict[str, Any]:
    def b(party: Party, net: InMemoryNetwork) -> Any:
        return getattr(bank, what)(party, args_for("bank", work, *extra))

    def f(party: Party, net: InMemoryNetwork) -> Any:
        return getattr(fintech, what)(party, args_for("fintech", work, *extra))

    return run({"bank": b, "fintech": f}, ROLES)


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("demo")
    head_of(data_dir / "fate" / "default_credit_hetero_guest.csv", work / "bank.csv", ROWS)
    head_of(data_dir / "fate" / "default_credit_hetero_host.csv", work / "fintech.csv", ROWS)
    ok(both(work, "train", "--compare"))
    return work


@pytest.mark.parametrize("mode", ["he", "plaintext"])
def test_score_cli_reproduces_the_test_auc_from_saved_halves(trained: Path, mode: str) -> None:
    import json

    report = json.loads((trained / "bank" / "report.json").read_text())["results"][mode]
    res: Any = ok(both(trained, "score", "--held-out", "--mode", mode))
    assert res["rows"] == 60
    assert abs(res["auc"] - report["test_auc"]) <= 2e-3
    with open(trained / "bank" / f"scores_{mode}.csv", newline="") as fh:
        got = list(csv.reader(fh))
    assert got[0] == ["id", "score"] and len(got) == 61
    p = np.array([float(r[1]) for r in got[1:]])
    assert ((p > 0) & (p < 1)).all() and p.std() > 0


def test_score_cli_refuses_halves_of_different_runs(trained: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(trained / "bank", tmp_path / "bank")
    shutil.copytree(trained / "fintech", tmp_path / "fintech")
    for who in ("bank", "fintech"):
        shutil.copy(trained / f"{who}.csv", tmp_path / f"{who}.csv")
    # the fintech's plaintext half presented as its HE half: another run, another mode
    shutil.copy(tmp_path / "fintech" / "fintech_model_plaintext.pt",
                tmp_path / "fintech" / "fintech_model_he.pt")
    out = both(tmp_path, "score")
    assert isinstance(out["fintech"], ConfigError) and "mode 'plaintext'" in str(out["fintech"])
    assert isinstance(out["bank"], TrainingInterrupted) and "fintech" in str(out["bank"])
