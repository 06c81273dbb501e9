"""Bucketed rr22 (psi.buckets): the file streamed into a few buckets on disk, one spu run per bucket.

Bucket counts and batch sizes are forced small so a few thousand rows cross several
batches and buckets. The partition is checked on its own (every row once, the same ID in
the same bucket at both parties); the end-to-end runs use spu (skipped without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import psi.buckets as pb
from party.errors import ConfigError
from party.handshake import RunMismatch
from party.testing import run_parties
from psi import IdError, PsiConfig
from psi.normalize import normalize_ids
from tests.psi.helpers import random_sets
from tests.psi.test_spu import NAMES, certs, links, needs_spu  # noqa: F401 - certs is a fixture

CFG = PsiConfig(protocol="rr22")


def write(path: Path, ids: list[str]) -> Path:
    pd.DataFrame({"id": ids, "v": [f"row{i}" for i in range(len(ids))]}).to_csv(path, index=False)
    return path


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pb, "BATCH_BYTES", 4096)  # ≈ 250 rows per batch


def test_partition_puts_every_row_once_and_an_id_in_the_same_bucket_everywhere(
        tmp_path: Path, small_batches: None) -> None:
    a, b = random_sets(3, 3000, 2000, 0.5)
    key = pb.bucket_key(CFG, "s", 4)
    parts = {}
    for name, ids in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        files, rep, _schema, sizes = pb.partition(write(tmp_path / f"{name}.csv", ids), ["id"], CFG,
                                                   "error", key, 4, tmp_path / name)
        assert rep.rows == len(ids) and sizes.sum() == len(ids) and (sizes > 0).all()
        where = {}
        for i, f in enumerate(files):
            t, _ = pb._load(f, "error")
            for v in t.column("id").to_pylist():
                assert v not in where
                where[v] = i
        assert set(where) == set(ids)
        parts[name] = where
    shared = set(a) & set(b)
    assert all(parts["a"][x] == parts["b"][x] for x in shared)
    # the bucket is a function of the canonical key: " X " and "x" land together
    ks = normalize_ids([["Alice ", "alice"]], CFG.normalize, duplicates="keep-first").keys
    assert len(ks) == 1


def test_duplicates_across_batches_follow_the_policy(tmp_path: Path, small_batches: None) -> None:
    ids = [f"id{i}" for i in range(1000)] + ["ID5 "]  # a repeat, far from the first, after normalising
    src = write(tmp_path / "d.csv", ids)
    key = pb.bucket_key(CFG, "s", 3)
    files, _, _, _ = pb.partition(src, ["id"], CFG, "keep-first", key, 3, tmp_path)
    kept, dropped = [], 0
    for f in files:
        t, n = pb._load(f, "keep-first")
        dropped += n
        kept += t.column("v").to_pylist()
    assert dropped == 1 and "row5" in kept and "row1000" not in kept
    with pytest.raises(IdError, match="repeat an ID"):
        for f in files:
            pb._load(f, "error")


def test_bad_input_is_refused_with_its_rows(tmp_path: Path, small_batches: None) -> None:
    src = write(tmp_path / "e.csv", [f"id{i}" for i in range(600)] + [""])
    with pytest.raises(IdError, match=r"rows \d+\.\.\d+"):
        pb.prepare(src, ["id"], CFG, "error", "s", 2)
    with pytest.raises(IdError, match="no column 'nope'"):
        pb.prepare(src, ["nope"], CFG, "error", "s", 2)


def _run(tmp_path: Path, cert_dir: Path, inputs: dict[str, Path], buckets: dict[str, int],
         catch: tuple[type[BaseException], ...] = (), **kw: Any) -> dict[str, Any]:
    lk = links(cert_dir)

    def fn(name: str):
        def f(p: Any) -> Any:
            try:
                return pb.align_csv_buckets(p, inputs[name], ["id"], tmp_path / f"{name}_out.csv",
                                            config=CFG, link=lk[name], buckets=buckets[name],
                                            timeout_s=60, **kw)
            except catch as e:
                return e
        return f
    return run_parties({n: fn(n) for n in NAMES}, timeout_s=180)


@needs_spu
def test_bucketed_rr22_matches_the_set_computation_in_one_order(
        tmp_path: Path, certs: Path, small_batches: None) -> None:  # noqa: F811
    a, b = random_sets(9, 2500, 1800, 0.5)
    inputs = {"bank": write(tmp_path / "bank.csv", a), "fintech": write(tmp_path / "fintech.csv", b)}
    out = _run(tmp_path, certs, inputs, dict.fromkeys(NAMES, 3))
    got = {n: pd.read_csv(tmp_path / f"{n}_out.csv", dtype=str) for n in NAMES}
    assert list(got["bank"]["id"]) == list(got["fintech"]["id"])  # one order at both
    assert set(got["bank"]["id"]) == set(a) & set(b) and len(got["bank"]) == len(set(a) & set(b))
    src = {n: pd.read_csv(inputs[n], dtype=str).set_index("id") for n in NAMES}
    for n in NAMES:  # rows intact
        assert list(got[n]["v"]) == list(src[n].loc[got[n]["id"], "v"])
        rep = out[n]
        assert rep["buckets"] == 3 and rep["shared_rows"] == len(set(a) & set(b))
        assert rep["largest_bucket"] < len(inputs[n].read_text().splitlines())  # a part, not all
        assert rep["peer_largest_bucket"] == out["fintech" if n == "bank" else "bank"]["largest_bucket"]


@needs_spu
def test_another_bucket_count_is_named(tmp_path: Path, certs: Path) -> None:  # noqa: F811
    a, b = random_sets(2, 300, 200, 0.5)
    inputs = {"bank": write(tmp_path / "bank.csv", a), "fintech": write(tmp_path / "fintech.csv", b)}
    out = _run(tmp_path, certs, inputs, {"bank": 2, "fintech": 3}, catch=(RunMismatch,))
    for n in NAMES:
        assert isinstance(out[n], RunMismatch) and "buckets" in str(out[n]), out[n]
        assert not (tmp_path / f"{n}_out.csv").exists()


def test_buckets_need_rr22_inner_both(tmp_path: Path) -> None:
    from party import InMemoryNetwork, Party

    net = InMemoryNetwork(list(NAMES))
    with pytest.raises(ConfigError, match="--buckets needs --protocol rr22"):
        pb.align_csv_buckets(Party("bank", net.transport("bank")), tmp_path / "x.csv", ["id"],
                             tmp_path / "o.csv", config=PsiConfig(), link=None, buckets=2)
