"""vfl.align: FATE's credit data with rows removed, bad input, atomic output, the CLI over gRPC."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from party import InMemoryNetwork, Party
from party.errors import ConfigError, PartyUnavailable
from party.testing import run_parties
from psi import IdError, NormalizeOptions, PsiConfig
from vfl.align import align, align_files, check_paths, main, read_table

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


@pytest.mark.grpc
def test_cli_bad_input_fails_the_peer_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12, case 4: the fintech refused its empty file; the bank waited its whole timeout."""
    import time

    cm, fed = _federation(tmp_path, ["bank", "fintech"])
    try:
        bad = tmp_path / "fintech.csv"
        bad.write_text("id,x\n")  # a header and no rows
        rc = main(["--config", str(fed), "--party", "fintech", "--input", str(bad),
                   "--id-column", "id", "--output", str(tmp_path / "f_out.csv")])
        assert rc == 2
        capsys.readouterr()
        good = tmp_path / "bank.csv"
        good.write_text("id\n" + "".join(f"c{i}\n" for i in range(50)))
        t0 = time.monotonic()
        rc = main(["--config", str(fed), "--party", "bank", "--input", str(good), "--id-column", "id",
                   "--output", str(tmp_path / "b_out.csv"), "--timeout-s", "120"])
        err = capsys.readouterr().err
        assert rc == 2 and time.monotonic() - t0 < 15
        assert "fintech" in err and "aborted" in err and "refused its input" in err, err
        assert not (tmp_path / "b_out.csv").exists()
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
    from psi.runner import run_steps

    fin = Party("fintech", net.transport("fintech"))  # joins the run, then dies mid-PSI
    pub = PsiSession("fintech", ["bank", "fintech"], [b"x"], PsiConfig()).public
    run = open_run(fin, protocol="psi", session="align", info={"psi": pub}, timeout_s=10)
    fin.recv("bank", run_steps(Tag("psi", "align", 0), run.run_id)("hello"), timeout_s=10)
    net.disconnect("fintech")
    t.join(20)
    assert errors and isinstance(errors[0], PartyUnavailable)
    assert dst.read_text() == "previous complete file\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- outputs that would overwrite an input (issue 12, "clear refusals") ----------------------------

def _nowhere_federation(tmp_path: Path) -> Path:
    """A federation whose router does not exist (and whose certificates were never made)."""
    from party.config import write_federation

    return write_federation(tmp_path / "fed.toml", name="t", router="127.0.0.1:1",
                            parties={"a": "party", "b": "party"}, cert_dir="no-certs")


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and fail) any attempt to dial the router."""
    import party.grpc_transport as gt

    calls: list[str] = []

    def refuse(*a: object, **kw: object) -> None:
        calls.append("connect")
        raise AssertionError("vfl.align connected before refusing its paths")

    monkeypatch.setattr(gt, "connect", refuse)
    monkeypatch.setattr(gt.GrpcTransport, "from_config", refuse)
    return calls


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("output-is-input", r"--output \S*in\.csv is the same file as --input \S*in\.csv"),
        ("dot-relative", r"--output \./in\.csv is the same file as --input in\.csv"),
        ("symlink", r"--output \S*link\.csv is the same file as --input \S*in\.csv"),
        ("hardlink", r"--output \S*hard\.csv is the same file as --input \S*in\.csv"),
        ("report-is-input", r"--report \S*in\.csv is the same file as --input"),
        ("report-is-output", r"--report \S*out\.csv and --output \S*out\.csv are the same file"),
        ("output-is-config", r"--output \S*fed\.toml is the same file as --config"),
        ("checkpoint-is-input", r"--checkpoint \S*in\.csv is the same path as --input"),
        ("report-in-checkpoint", r"--report \S*state\.json is inside --checkpoint"),
    ],
)
def test_cli_refuses_output_that_is_an_input_before_connecting(
    case: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], no_connect: list[str],
) -> None:
    fed = _nowhere_federation(tmp_path)
    src = tmp_path / "in.csv"
    src.write_text("id,x\n1,a\n2,b\n")
    before = src.read_bytes()
    stat0 = src.stat()
    out, report, ckpt = str(tmp_path / "out.csv"), None, None
    if case == "output-is-input":
        out = str(src)
    elif case == "dot-relative":
        monkeypatch.chdir(tmp_path)
        src = Path("in.csv")
        out = "./in.csv"
    elif case == "symlink":
        (tmp_path / "link.csv").symlink_to(src)
        out = str(tmp_path / "link.csv")
    elif case == "hardlink":
        os.link(src, tmp_path / "hard.csv")
        out = str(tmp_path / "hard.csv")
    elif case == "report-is-input":
        report = str(src)
    elif case == "report-is-output":
        report = str(tmp_path / "sub" / ".." / "out.csv")
    elif case == "output-is-config":
        out = str(fed)
    elif case == "checkpoint-is-input":
        ckpt = str(src)
    elif case == "report-in-checkpoint":
        ckpt = str(tmp_path / "ck")
        report = str(tmp_path / "ck" / "state.json")
    argv = ["--config", str(fed), "--party", "a", "--input", str(src), "--id-column", "id",
            "--output", out, "--workers", "0"]
    argv += ["--report", report] if report else []
    argv += ["--checkpoint", ckpt] if ckpt else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vfl.align: ") and err.count("\n") == 1, err  # one line
    assert re.search(match, err), err
    assert no_connect == []  # refused before any connection (let alone a message)
    assert (tmp_path / "in.csv").read_bytes() == before  # the input is untouched
    assert (tmp_path / "in.csv").stat().st_mtime_ns == stat0.st_mtime_ns
    assert (tmp_path / "in.csv").stat().st_ino == stat0.st_ino
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "ck").exists()


def test_cli_path_refusal_comes_before_a_missing_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without any patching: the router does not exist, the error is still the path error."""
    fed = _nowhere_federation(tmp_path)
    src = tmp_path / "in.csv"
    src.write_text("id,x\n1,a\n")
    before = src.read_bytes()
    assert main(["--config", str(fed), "--party", "a", "--input", str(src), "--id-column", "id",
                 "--output", str(src), "--timeout-s", "1"]) == 2
    err = capsys.readouterr().err
    assert "is the same file as --input" in err and "refusing to overwrite an input" in err
    assert "router" not in err.lower() and "certificate" not in err.lower()
    assert src.read_bytes() == before


def test_cli_distinct_paths_pass_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           no_connect: list[str]) -> None:
    """Distinct outputs (even ones beside the input, or an input in the checkpoint dir) are fine:
    the run goes on to dial the router (here refused by the fixture)."""
    fed = _nowhere_federation(tmp_path)
    (tmp_path / "ck").mkdir()
    src = tmp_path / "ck" / "in.csv"
    src.write_text("id,x\n1,a\n")
    with pytest.raises(AssertionError, match="connected"):
        main(["--config", str(fed), "--party", "a", "--input", str(src), "--id-column", "id",
              "--output", str(tmp_path / "out.csv"), "--report", str(tmp_path / "out.json"),
              "--checkpoint", str(tmp_path / "ck2")])
    assert no_connect == ["connect"]


def test_align_files_refuses_output_that_is_its_input_before_any_message(tmp_path: Path) -> None:
    net = InMemoryNetwork(["bank", "fintech"])
    bank = Party("bank", net.transport("bank"))
    src = tmp_path / "bank.csv"
    src.write_text("id\na\nb\n")
    before = src.read_bytes()
    with pytest.raises(ConfigError, match=r"output \S*bank\.csv is the same file as input"):
        align_files(bank, src, ["id"], tmp_path / "." / "bank.csv", timeout_s=1, workers=0)
    with pytest.raises(ConfigError, match=r"report_path \S*bank\.csv is the same file as input"):
        align_files(bank, src, ["id"], tmp_path / "o.csv", report_path=src, timeout_s=1, workers=0)
    with pytest.raises(ConfigError, match=r"report_path \S*o\.csv and output \S*o\.csv are the same"):
        align_files(bank, src, ["id"], tmp_path / "o.csv", report_path=tmp_path / "o.csv", timeout_s=1)
    with pytest.raises(ConfigError, match=r"output \S*o\.csv is inside checkpoint"):
        align_files(bank, tmp_path / "bank.csv", ["id"], tmp_path / "ck" / "o.csv",
                    checkpoint=tmp_path / "ck", timeout_s=1)
    assert src.read_bytes() == before and not (tmp_path / "o.csv").exists()
    assert bank.transport.stats.snapshot()["messages_sent"] == 0


def test_check_paths_ignores_absent_and_distinct_paths(tmp_path: Path) -> None:
    check_paths([("--input", tmp_path / "a.csv"), ("--config", None)],
                [("--output", tmp_path / "b.csv"), ("--report", None)], ("--checkpoint", None))
    check_paths([("--input", tmp_path / "ck" / "a.csv")], [("--output", tmp_path / "ck.csv")],
                ("--checkpoint", tmp_path / "ck"))
