"""threats.md row 21: a PSI run killed midway resumes from its checkpoint, with the same output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from psi.checkpoint import CheckpointMismatch
from psi.group import hash_to_group, mask
from psi.protocol import PsiConfig
from tests.psi.helpers import Crash, make_sessions, pump

A = [f"id{i}".encode() for i in range(0, 300)]
B = [f"id{i}".encode() for i in range(200, 420)]
CFG = PsiConfig(chunk_points=64)


def _killed_run(tmp_path: Path, sets: dict[str, list[bytes]], at: Callable[[str], bool]
                ) -> dict[str, Path]:
    """Each party's checkpoint directory after a run of ``sets`` in which every party was
    killed at the first step that ``at`` accepts."""
    dirs = {n: tmp_path / n for n in sets}
    with pytest.raises(Crash):
        pump(make_sessions(sets, CFG, checkpoints=dirs), crash_when=lambda src, dst, step: at(step))
    return dirs


def _expected_order(dirs: dict[str, Path], shared: list[bytes]) -> list[bytes]:
    """The agreed order recomputed from the saved secrets: sort of H(x)^(ka kb)."""
    states = {n: json.loads((d / "state.json").read_text()) for n, d in dirs.items()}
    nonces = next(iter(states.values()))["nonces"]
    salt = hashlib.sha512(
        b"tessera-psi session salt\x00" + CFG.salt + b"".join(bytes.fromhex(nonces[p]) for p in sorted(nonces))
    ).digest()[:32]
    dst = b"TESSERA-PSI-V1-ristretto255_XMD:SHA-512_R255MAP_RO_-" + salt.hex().encode()
    full = {}
    for x in shared:
        v = hash_to_group([x], dst)
        for st in states.values():
            v = mask(v, bytes.fromhex(st["scalar"]))
        full[x] = v
    return sorted(shared, key=lambda x: full[x])


@pytest.mark.parametrize("kill_before", ["return:a", "return:b", "result"])
def test_two_party_resume_gives_the_uninterrupted_output(tmp_path: Path, kill_before: str) -> None:
    sets = {"a": A, "b": B}
    dirs = _killed_run(tmp_path, sets, lambda step: step == kill_before)
    assert (dirs["a"] / "state.json").stat().st_mode & 0o077 == 0  # secrets: owner only
    expected = _expected_order(dirs, sorted(set(A) & set(B)))
    sess = make_sessions(sets, CFG, checkpoints=dirs)
    res = pump(sess)
    assert all(s.resumed for s in sess.values())
    got = {p: [sets[p][i] for i in r.rows] for p, r in res.items()}
    assert got["a"] == got["b"] == expected
    # time saved: the chains that finished before the kill were not recomputed
    assert sum(s.engine.ops for s in sess.values()) < 2 * len(A) + 2 * len(B)


def test_three_party_resume(tmp_path: Path) -> None:
    sets = {"a": A, "b": B, "c": [f"id{i}".encode() for i in range(250, 500)]}
    dirs = _killed_run(tmp_path, sets, lambda step: step.startswith("collect:"))
    sess = make_sessions(sets, CFG, checkpoints=dirs)
    res = pump(sess)
    assert all(s.resumed for s in sess.values())
    expect = set(sets["a"]) & set(sets["b"]) & set(sets["c"])
    orders = [[sets[p][i] for i in r.rows] for p, r in res.items()]
    assert set(orders[0]) == expect and all(o == orders[0] for o in orders)


def test_changed_input_or_config_is_refused(tmp_path: Path) -> None:
    sets = {"a": A, "b": B}
    dirs = _killed_run(tmp_path, sets, lambda step: step == "return:a")
    with pytest.raises(CheckpointMismatch, match="other input IDs"):
        make_sessions({"a": [*A, b"new customer"], "b": B}, CFG, checkpoints=dirs)
    with pytest.raises(CheckpointMismatch, match="another PSI config"):
        make_sessions(sets, PsiConfig(chunk_points=64, salt=b"x"), checkpoints=dirs)


def test_peer_without_checkpoint_means_a_fresh_correct_run(tmp_path: Path) -> None:
    sets = {"a": A, "b": B}
    dirs = _killed_run(tmp_path, sets, lambda step: step == "result")
    old = json.loads((dirs["a"] / "state.json").read_text())["scalar"]
    sess = make_sessions(sets, CFG, checkpoints={"a": dirs["a"]})  # b lost its directory
    res = pump(sess)
    assert not sess["a"].resumed
    assert json.loads((dirs["a"] / "state.json").read_text())["scalar"] != old  # fresh secrets
    assert sorted(A[i] for i in res["a"].rows) == sorted(set(A) & set(B))
