"""vfl.align: FATE's credit data with rows removed, bad input, atomic output, the CLI over gRPC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from party import InMemoryNetwork, Party
from party.errors import PartyUnavailable
from party.testing import run_parties
from psi import IdError, NormalizeOptions, PsiConfig
from vfl.align import align, align_files, main, read_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def credit(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    """FATE default_credit guest/host, each with a different random 10% of rows removed."""
    d = tmp_path_factory.mktemp("credit")
    g = pd.read_csv(data_dir / "fate" / "default_credit_hetero_guest.csv", dtype=str)
    h = pd.read_csv(data_dir / "fate" / "default_credit_hetero_host.csv", dtype=str)
    g = g.sample(frac=0.9, random_state=1)
    h = h.sample(frac=0.9, random_state=2)
    g.to_csv(d / "guest.csv", index=False)
    h.to_csv(d / "host.csv", index=False)
    return d / "guest.csv", d / "host.csv", set(g["id"]) & set(h["id"])


def _check_aligned(guest_out: Path, host_out: Path, shared: set[str], guest_in: Path) -> None:
    go = pd.read_csv(guest_out, dtype=str)
    ho = pd.read_csv(host_out, dtype=str)
    assert list(go["id"]) == list(ho["id"])  # one agreed order
    assert set(go["id"]) == shared and len(go) == len(shared)
    gin = pd.read_csv(guest_in, dtype=str).set_index("id")
    assert list(go.columns) == ["id", *gin.columns]  # all columns kept
    pd.testing.assert_frame_equal(go.set_index("id"), gin.loc[go["id"]])  # rows intact


@pytest.mark.slow
def test_fate_credit_in_memory(credit: tuple[Path, Path, set[str]], tmp_path: Path) -> None:
    guest, host, shared = credit
    out = run_parties({
        "guest": lambda p: align_files(p, guest, ["id"], tmp_path / "g.csv",
                                       report_path=tmp_path / "g.json", timeout_s=120),
        "host": lambda p: align_files(p, host, ["id"], tmp_path / "h.csv", timeout_s=120),
    })
    _check_aligned(tmp_path / "g.csv", tmp_path / "h.csv", shared, guest)
    rep = json.loads((tmp_path / "g.json").read_text())
    assert rep["own_rows"] == 27000 and rep["shared_rows"] == len(shared)
    assert rep["duplicates_dropped"] == 0 and rep["peers"] == {"host": 27000}
    assert rep["bytes_sent"] > 32 * 27000 and rep["seconds"] > 0
    assert out["host"]["output"] == str(tmp_path / "h.csv")


def _federation(tmp_path: Path, names: list[str]):  # type: ignore[no-untyped-def]
    from party.config import write_federation
    from party.testing import grpc_federation

    cm = grpc_federation(names, directory=tmp_path)
    config, _router = cm.__enter__()
    fed = write_federation(tmp_path / "fed.toml", name="test", router=config.router,
                           parties=dict.fromkeys(names, "party"), cert_dir="certs")
    return cm, fed


@pytest.mark.slow
@pytest.mark.grpc
def test_cli_two_processes_over_grpc(credit: tuple[Path, Path, set[str]], tmp_path: Path) -> None:
    # the first 6000 rows of each (already 10%-thinned) file keep the process test quick
    full_guest, full_host, _ = credit
    guest, host = tmp_path / "guest_in.csv", tmp_path / "host_in.csv"
    g = pd.read_csv(full_guest, dtype=str).iloc[:6000]
    h = pd.read_csv(full_host, dtype=str).iloc[:6000]
    g.to_csv(guest, index=False)
    h.to_csv(host, index=False)
    shared = set(g["id"]) & set(h["id"])
    assert len(shared) > 500
    cm, fed = _federation(tmp_path, ["guest", "host"])
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "vfl.align", "--config", str(fed), "--party", name,
                 "--input", str(src), "--id-column", "id", "--output", str(tmp_path / f"{name}.csv"),
                 "--report", str(tmp_path / f"{name}.json"), "--workers", "1"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for name, src in (("guest", guest), ("host", host))
        }
        outs = {n: p.communicate(timeout=240) for n, p in procs.items()}
    finally:
        cm.__exit__(None, None, None)
    for n, p in procs.items():
        assert p.returncode == 0, outs[n]
        assert f"{len(shared)} shared" in outs[n][0]
    _check_aligned(tmp_path / "guest.csv", tmp_path / "host.csv", shared, guest)
    assert json.loads((tmp_path / "host.json").read_text())["shared_rows"] == len(shared)


def test_cli_refuses_bad_input_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cm, fed = _federation(tmp_path, ["a", "b"])
    try:
        src = tmp_path / "a.csv"
        src.write_text("ID,x\n1,a\n2,b\n1,c\n")
        out = tmp_path / "out.csv"
        rc = main(["--config", str(fed), "--party", "a", "--input", str(src), "--id-column", "ID",
                   "--output", str(out)])
        assert rc == 2 and not out.exists()
        assert "repeat an ID" in capsys.readouterr().err
        rc = main(["--config", str(fed), "--party", "a", "--input", str(src), "--id-column", "cust",
                   "--output", str(out)])
        assert rc == 2 and "no column 'cust'" in capsys.readouterr().err
        rc = main(["--config", str(fed), "--party", "zed", "--input", str(src), "--id-column", "ID",
                   "--output", str(out)])
        assert rc == 2 and "zed" in capsys.readouterr().err
    finally:
        cm.__exit__(None, None, None)


def _pair(fa, fb):  # type: ignore[no-untyped-def]
    return run_parties({"bank": fa, "fintech": fb})


def test_missing_and_empty_ids_refused_with_counts() -> None:
    net = InMemoryNetwork(["bank", "fintech"])
    party = Party("bank", net.transport("bank"))
    t = pd.DataFrame({"ID": ["a", "", None, float("nan"), "b"], "v": range(5)})
    with pytest.raises(IdError, match=r"3 of 5 rows have an empty or missing ID \(rows 1, 2, 3"):
        align(party, t, ["ID"], timeout_s=1)
    with pytest.raises(IdError, match="no column 'id'"):
        align(party, t, ["id"], timeout_s=1)


def test_duplicates_keep_first_and_report() -> None:
    a = pd.DataFrame({"ID": ["x", "y", "X ", "z"], "v": [1, 2, 3, 4]})
    b = pd.DataFrame({"ID": ["x", "z", "q"], "w": [9, 8, 7]})
    out = _pair(
        lambda p: align(p, a, ["ID"], duplicates="keep-first", timeout_s=10, workers=0),
        lambda p: align(p, b, ["ID"], timeout_s=10, workers=0),
    )
    ra, rb = out["bank"], out["fintech"]
    assert ra.report["duplicates_dropped"] == 1 and ra.report["shared_rows"] == 2
    assert list(ra.table["v"]) in ([1, 4], [4, 1])  # first "x" kept, not "X "
    assert [s.lower().strip() for s in ra.table["ID"]] == list(rb.table["ID"])


def test_typed_vs_string_ids_are_explained_and_canonical_numbers_match(tmp_path: Path) -> None:
    """'007' (text) vs 7 (an int column): different under numbers='keep', equal under 'canonical'."""
    pd.DataFrame({"ID": [7, 8, 10], "v": [1, 2, 3]}).to_parquet(tmp_path / "bank.parquet")
    (tmp_path / "fin.csv").write_text("ID,w\n007,a\n8.0,b\n9,c\n")
    bank, fin = read_table(tmp_path / "bank.parquet"), read_table(tmp_path / "fin.csv")
    assert list(fin["ID"]) == ["007", "8.0", "9"]  # CSV read as text: nothing silently converted
    out = _pair(
        lambda p: align(p, bank, ["ID"], timeout_s=10, workers=0),
        lambda p: align(p, fin, ["ID"], timeout_s=10, workers=0),
    )
    assert out["bank"].report["shared_rows"] == 0
    notes = " ".join(out["fintech"].report["normalization"]["notes"])
    assert "'007'" in notes and "'1.0'" in notes
    assert "were numbers" in " ".join(out["bank"].report["normalization"]["notes"])
    cfg = PsiConfig(normalize=NormalizeOptions(numbers="canonical"))
    out = _pair(
        lambda p: align(p, bank, ["ID"], config=cfg, timeout_s=10, workers=0),
        lambda p: align(p, fin, ["ID"], config=cfg, timeout_s=10, workers=0),
    )
    v = list(out["bank"].table["v"])
    assert v in ([1, 2], [2, 1])
    assert list(out["fintech"].table["w"]) == (["a", "b"] if v == [1, 2] else ["b", "a"])


def test_non_normalised_ids_known_intersection_recall_is_one() -> None:
    """threats row 17: whitespace, case, NFC vs NFD, BOM, CRLF, 1 vs 1.0 all map together."""
    left = ["Zoë", "ALICE", "\ufeffbob", "carol\r\n", " dave ", 1, "Straße"]
    right = ["Zoe\u0308", "alice", "bob", "Carol", "dave", 1.0, "STRASSE", "extra"]
    out = _pair(
        lambda p: align(p, pd.DataFrame({"k": left}), ["k"], timeout_s=10, workers=0),
        lambda p: align(p, pd.DataFrame({"k": right}), ["k"], timeout_s=10, workers=0),
    )
    assert out["bank"].report["shared_rows"] == len(left)


def test_composite_key_and_parquet_output(tmp_path: Path) -> None:
    a = pd.DataFrame({"country": ["FR", "FR", "DE"], "num": ["1", "2", "1"], "v": [1.5, 2.5, 3.5]})
    b = pd.DataFrame({"country": ["fr", "DE", "DE"], "num": ["2", "1", "2"]})
    a.to_parquet(tmp_path / "a.parquet")
    b.to_csv(tmp_path / "b.csv", index=False)
    out = _pair(
        lambda p: align_files(p, tmp_path / "a.parquet", ["country", "num"], tmp_path / "ao.parquet",
                              timeout_s=10, workers=0),
        lambda p: align_files(p, tmp_path / "b.csv", ["country", "num"], tmp_path / "bo.csv",
                              timeout_s=10, workers=0),
    )
    ao = pd.read_parquet(tmp_path / "ao.parquet")
    bo = pd.read_csv(tmp_path / "bo.csv", dtype=str)
    assert out["bank"]["shared_rows"] == 2
    assert [(c.lower(), n) for c, n in zip(ao["country"], ao["num"], strict=True)] == [
        (c.lower(), n) for c, n in zip(bo["country"], bo["num"], strict=True)
    ]
    assert ao["v"].dtype == np.float64


def test_empty_and_disjoint_give_valid_empty_outputs(tmp_path: Path) -> None:
    """threats row 16: empty intersection -> a CSV with only the header; no hang."""
    (tmp_path / "a.csv").write_text("id,x\n")
    (tmp_path / "b.csv").write_text("id,y\n1,2\n")
    out = _pair(
        lambda p: align_files(p, tmp_path / "a.csv", ["id"], tmp_path / "ao.csv", timeout_s=10),
        lambda p: align_files(p, tmp_path / "b.csv", ["id"], tmp_path / "bo.csv", timeout_s=10),
    )
    assert out["bank"]["shared_rows"] == 0 == out["fintech"]["shared_rows"]
    assert (tmp_path / "ao.csv").read_text().strip() == "id,x"
    assert (tmp_path / "bo.csv").read_text().strip() == "id,y"


def test_cardinality_mode_writes_no_rows(tmp_path: Path) -> None:
    cfg = PsiConfig(mode="cardinality")
    t = pd.DataFrame({"id": ["a", "b", "c"]})
    out = _pair(
        lambda p: align(p, t, ["id"], config=cfg, timeout_s=10),
        lambda p: align(p, t.iloc[:2], ["id"], config=cfg, timeout_s=10),
    )
    assert out["bank"].table is None and out["bank"].report["shared_rows"] == 2


def test_peer_disconnect_leaves_no_output_and_keeps_old_file(tmp_path: Path) -> None:
    net = InMemoryNetwork(["bank", "fintech"])
    bank = Party("bank", net.transport("bank"))
    src = tmp_path / "bank.csv"
    pd.DataFrame({"id": [f"i{k}" for k in range(200)]}).to_csv(src, index=False)
    dst = tmp_path / "aligned.csv"
    dst.write_text("previous complete file\n")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            align_files(bank, src, ["id"], dst, timeout_s=30, workers=0)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    from party.handshake import open_run
    from party.transport import Tag
    from psi.protocol import PsiConfig, PsiSession

    fin = Party("fintech", net.transport("fintech"))  # joins the run, then dies mid-PSI
    pub = PsiSession("fintech", ["bank", "fintech"], [b"x"], PsiConfig()).public
    open_run(fin, protocol="psi", session="align", info={"psi": pub}, timeout_s=10)
    fin.recv("bank", Tag("psi", "align", 0, "hello"), timeout_s=10)
    net.disconnect("fintech")
    t.join(20)
    assert errors and isinstance(errors[0], PartyUnavailable)
    assert dst.read_text() == "previous complete file\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
