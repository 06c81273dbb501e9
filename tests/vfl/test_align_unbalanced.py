"""python -m vfl.align --mode unbalanced: the offline phase, then an online query, two processes over gRPC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.psi.test_join import random_sets
from tests.vfl.test_align import ROOT, _federation
from vfl.align import main


def _run_both(fed: Path, tmp_path: Path, inputs: dict[str, Path], extra: list[str],
              outputs: bool) -> dict[str, tuple[int, str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "vfl.align", "--config", str(fed), "--party", name,
             "--input", str(src), "--id-column", "id", "--report", str(tmp_path / f"{name}.json"),
             "--mode", "unbalanced", "--cache", str(tmp_path / f"cache-{name}"), "--workers", "1",
             *(["--output", str(tmp_path / f"{name}_out.csv")] if outputs else []), *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, src in inputs.items()
    }
    res = {}
    for n, p in procs.items():
        out, err = p.communicate(timeout=120)
        res[n] = (p.returncode, out, err)
    return res


@pytest.mark.grpc
def test_cli_offline_then_online_over_grpc(tmp_path: Path) -> None:
    big, small = random_sets(11, 4000, 300, 0.5)
    inputs = {"bank": tmp_path / "bank.csv", "fintech": tmp_path / "fintech.csv"}
    pd.DataFrame({"id": big, "x": range(len(big))}).to_csv(inputs["bank"], index=False)
    pd.DataFrame({"id": small, "y": range(len(small))}).to_csv(inputs["fintech"], index=False)
    cm, fed = _federation(tmp_path, ["bank", "fintech"])
    try:
        off = _run_both(fed, tmp_path, inputs, ["--phase", "offline"], outputs=False)
        for _n, (rc, out, err) in off.items():
            assert rc == 0, err
            assert "offline phase done" in out
        rep = json.loads((tmp_path / "bank.json").read_text())
        assert rep["phase"] == "offline" and rep["unbalanced"]["role"] == "server"
        assert rep["output"] is None and rep["shared_rows"] is None
        on = _run_both(fed, tmp_path, inputs, ["--join", "left", "--left", "fintech"], outputs=True)
    finally:
        cm.__exit__(None, None, None)
    shared = set(big) & set(small)
    for _n, (rc, out, err) in on.items():
        assert rc == 0, err
        assert f"{len(shared)} shared" in out
    b = pd.read_csv(tmp_path / "bank_out.csv", dtype=str, keep_default_na=False)
    f = pd.read_csv(tmp_path / "fintech_out.csv", dtype=str, keep_default_na=False)
    s = len(shared)
    assert list(b["id"][:s]) == list(f["id"][:s]) and set(f["id"][:s]) == shared  # same order
    assert len(f) == len(small) and len(b) == len(small)  # left join on the small party
    assert set(f["id"][s:]) == set(small) - shared and (b["id"][s:] == "").all()
    rep = json.loads((tmp_path / "fintech.json").read_text())
    assert rep["mode"] == "unbalanced" and rep["phase"] == "online" and rep["join"] == "left"
    assert rep["unbalanced"]["role"] == "client" and rep["unbalanced"]["cache_items"] == 4000


def test_cli_unbalanced_needs_a_cache_and_phase_needs_the_mode(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.csv"
    src.write_text("id\n1\n")
    fed = tmp_path / "fed.toml"
    fed.write_text('[federation]\nname = "t"\nrouter = "127.0.0.1:1"\n[tls]\nca = "ca.pem"\n'
                   '[parties.a]\nrole = "party"\n[parties.b]\nrole = "party"\n')
    base = ["--config", str(fed), "--party", "a", "--input", str(src), "--id-column", "id",
            "--output", str(tmp_path / "o.csv")]
    assert main([*base, "--mode", "unbalanced"]) == 2
    assert "--mode unbalanced needs --cache" in capsys.readouterr().err
    assert main([*base, "--phase", "offline"]) == 2
    assert "--cache and --phase need --mode unbalanced" in capsys.readouterr().err
