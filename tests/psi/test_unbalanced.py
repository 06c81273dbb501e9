"""Unbalanced PSI (psi.unbalanced): offline cache + online queries against plain set computations.

Both parties run in memory (threads); each has its own cache directory. The online phase
is checked against Python's set operations for every join type, with a cache reused by
several queries, and the errors name what is wrong (mode, phase, cache, changed IDs).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from party.errors import ConfigError, RemoteProtocolError
from party.handshake import RunMismatch
from party.testing import run_parties
from psi import NormalizeOptions, PsiConfig, run_psi
from psi.protocol import JOINS
from psi.unbalanced import Cache, tags_of
from tests.psi.helpers import random_sets
from tests.psi.test_join import check_join_outputs

NAMES = ("bank", "fintech")


def run_two(ids: dict[str, Any], cfgs: dict[str, PsiConfig], caches: dict[str, Path],
            catch: tuple[type[BaseException], ...] = (), **kw: Any) -> dict[str, Any]:
    def fn(name: str):
        def f(p: Any) -> Any:
            try:
                return run_psi(p, ids[name], config=cfgs[name], cache=caches[name], timeout_s=30,
                               workers=0, **kw)
            except catch as e:
                return e
        return f
    return run_parties({n: fn(n) for n in NAMES}, timeout_s=60)


def both(cfg: PsiConfig) -> dict[str, PsiConfig]:
    return dict.fromkeys(NAMES, cfg)


def offline(tmp_path: Path, server_ids: list[str], client_ids: list[str], **cfg: Any) -> dict[str, Path]:
    caches = {n: tmp_path / f"cache-{n}" for n in NAMES}
    out = run_two({"bank": server_ids, "fintech": client_ids},
                  both(PsiConfig(mode="unbalanced", phase="offline", **cfg)), caches)
    assert out["bank"].rows is None and out["bank"].size is None  # nothing learned offline
    assert out["bank"].backend["role"] == "server" and out["fintech"].backend["role"] == "client"
    return caches


@pytest.mark.parametrize(("join", "overlap"), [(j, (0.0, 0.5, 1.0)[i % 3]) for i, j in enumerate(JOINS)])
def test_online_matches_the_set_computation_for_each_join(tmp_path: Path, join: str, overlap: float) -> None:
    big, small = random_sets(7, 3000, 200, overlap)
    caches = offline(tmp_path, big, small)
    cfg = PsiConfig(mode="unbalanced", join=join)
    out = run_two({"bank": big, "fintech": small}, both(cfg), caches)
    check_join_outputs(join, big, small, out["bank"].rows, out["fintech"].rows)
    assert out["bank"].size == out["fintech"].size == len(set(big) & set(small))
    assert out["bank"].peer_sizes == {"fintech": 200} and out["fintech"].peer_sizes == {"bank": 3000}


def test_one_cache_serves_several_queries_and_the_client_may_hold_any_set(tmp_path: Path) -> None:
    big, small = random_sets(3, 2500, 100, 0.5)
    caches = offline(tmp_path, big, small)
    r = random.Random(5)
    for q in range(3):  # new client sets (other sizes, other overlaps) against the same cache
        query = r.sample(big, 40 * (q + 1)) + [f"new{q}-{i}" for i in range(30)]
        r.shuffle(query)
        out = run_two({"bank": big, "fintech": query}, both(PsiConfig(mode="unbalanced")), caches)
        got_b = [big[i] for i in out["bank"].rows]
        got_f = [query[i] for i in out["fintech"].rows]
        assert got_b == got_f  # the same customers in the same order at both
        assert set(got_f) == set(big) & set(query)


def test_normalisation_and_duplicates_policy_hold(tmp_path: Path) -> None:
    big = [" Alice ", "BOB", "carol", "dave", "bob"]  # "bob" repeats "BOB" after casefolding
    small = ["alice", "Bob ", "zed"]
    caches = {n: tmp_path / n for n in NAMES}
    kw: dict[str, Any] = {"duplicates": "keep-first"}
    run_two({"bank": big, "fintech": small}, both(PsiConfig(mode="unbalanced", phase="offline")),
            caches, **kw)
    out = run_two({"bank": big, "fintech": small}, both(PsiConfig(mode="unbalanced")), caches, **kw)
    assert sorted(out["bank"].rows.tolist()) == [0, 1]  # the first "bob" row is kept
    assert [big[i].strip().lower() for i in out["bank"].rows] == \
        [small[i].strip().lower() for i in out["fintech"].rows]
    assert out["bank"].normalize.duplicates_dropped == 1


def test_cache_holds_sorted_tags_only_and_the_key_stays_with_the_server(tmp_path: Path) -> None:
    big, small = random_sets(1, 1000, 50, 0.5)
    caches = offline(tmp_path, big, small)
    client, server = Cache(caches["fintech"]), Cache(caches["bank"])
    tags = client.tags()
    assert len(tags) == 1000 and bool((tags[1:] > tags[:-1]).all())
    assert np.array_equal(np.asarray(tags), np.asarray(server.tags()))
    assert not (caches["fintech"] / "key.bin").exists()
    assert (caches["bank"] / "key.bin").stat().st_mode & 0o077 == 0
    meta = json.loads((caches["fintech"] / "meta.json").read_text())
    assert meta["role"] == "client" and meta["server"] == "bank" and meta["n_items"] == 1000
    # a tag is bound to its key: another key with the same point gives another tag
    pt = bytes(range(32))
    assert tags_of([b"a"], pt) != tags_of([b"b"], pt)


def test_a_fresh_offline_phase_gives_unlinkable_tags(tmp_path: Path) -> None:
    big, small = random_sets(2, 500, 20, 0.5)
    a = offline(tmp_path / "one", big, small)
    b = offline(tmp_path / "two", big, small)  # same set, new key and cache id
    ta, tb = set(Cache(a["fintech"]).tags().tolist()), set(Cache(b["fintech"]).tags().tolist())
    assert not ta & tb


def test_a_peer_in_another_mode_gets_an_error_naming_the_field(tmp_path: Path) -> None:
    big, small = random_sets(4, 300, 30, 0.5)
    caches = offline(tmp_path, big, small)
    cfgs = {"bank": PsiConfig(mode="unbalanced"), "fintech": PsiConfig(mode="both")}
    out = run_two({"bank": big, "fintech": small}, cfgs, caches, catch=(RunMismatch,))
    for n in NAMES:
        assert isinstance(out[n], RunMismatch) and "info.mode" in str(out[n]), out[n]
        assert "--mode" in str(out[n])


def test_a_peer_in_another_phase_gets_an_error_naming_the_field(tmp_path: Path) -> None:
    big, small = random_sets(4, 300, 30, 0.5)
    caches = offline(tmp_path, big, small)
    cfgs = {"bank": PsiConfig(mode="unbalanced", phase="offline"),
            "fintech": PsiConfig(mode="unbalanced")}
    out = run_two({"bank": big, "fintech": small}, cfgs, caches, catch=(RunMismatch,))
    for n in NAMES:
        assert isinstance(out[n], RunMismatch) and "phase" in str(out[n]), out[n]


def test_online_without_a_cache_is_refused_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no unbalanced-PSI cache.*--phase offline"):
        from party import InMemoryNetwork, Party

        net = InMemoryNetwork(list(NAMES))
        run_psi(Party("bank", net.transport("bank")), ["a"], config=PsiConfig(mode="unbalanced"),
                cache=tmp_path / "none", timeout_s=1)
    with pytest.raises(ConfigError, match="needs a cache directory"):
        run_psi(Party("bank", net.transport("bank")), ["a"], config=PsiConfig(mode="unbalanced"),
                timeout_s=1)


def test_server_ids_changed_since_offline_are_refused(tmp_path: Path) -> None:
    big, small = random_sets(6, 400, 40, 0.5)
    caches = offline(tmp_path, big, small)
    out = run_two({"bank": [*big[:-1], "someone-new"], "fintech": small},
                  both(PsiConfig(mode="unbalanced")), caches,
                  catch=(ConfigError, RemoteProtocolError, Exception))
    assert isinstance(out["bank"], ConfigError) and "not those of the offline phase" in str(out["bank"])
    assert isinstance(out["fintech"], Exception)  # told, not left waiting


def test_another_normalisation_than_offline_is_refused(tmp_path: Path) -> None:
    big, small = random_sets(6, 400, 40, 0.5)
    caches = offline(tmp_path, big, small)
    cfg = PsiConfig(mode="unbalanced", normalize=NormalizeOptions(casefold=False))
    out = run_two({"bank": big, "fintech": small}, both(cfg), caches, catch=(ConfigError,))
    for n in NAMES:
        assert isinstance(out[n], ConfigError) and "normalize differs from the offline" in str(out[n])


def test_mode_rules_are_checked_in_the_config() -> None:
    with pytest.raises(ConfigError, match="only meaningful in mode 'unbalanced'"):
        PsiConfig(phase="offline")
    with pytest.raises(ConfigError, match="protocol 'rr22'"):
        PsiConfig(mode="unbalanced", protocol="rr22")
    with pytest.raises(ConfigError, match="phase must be one of"):
        PsiConfig(mode="unbalanced", phase="later")  # type: ignore[arg-type]


def _tamper_mask(monkeypatch: pytest.MonkeyPatch, who: str, forge: Any) -> None:
    """``who``'s first masking of a batch returns ``forge(points)`` (its query or its answer)."""
    import threading

    from psi.group import GroupEngine

    real = GroupEngine.mask
    done: list[bool] = []

    def mask(self: GroupEngine, points: bytes, scalar: bytes) -> bytes:
        out = real(self, points, scalar)
        if threading.current_thread().name == f"party-{who}" and not done:
            done.append(True)
            return forge(out)
        return out

    monkeypatch.setattr(GroupEngine, "mask", mask)


@pytest.mark.parametrize(("who", "what"), [("fintech", "sent an invalid point"),
                                           ("bank", "answered with an invalid point")])
def test_an_invalid_point_in_a_query_or_answer_fails_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, who: str, what: str) -> None:
    """threats rows 18-19: the identity (or a non-canonical encoding) is refused, by either side."""
    from psi.ristretto import IDENTITY

    big, small = random_sets(8, 500, 40, 0.5)
    caches = offline(tmp_path, big, small)
    _tamper_mask(monkeypatch, who, lambda pts: IDENTITY + pts[32:])
    out = run_two({"bank": big, "fintech": small}, both(PsiConfig(mode="unbalanced")), caches,
                  catch=(Exception,))
    victim = "bank" if who == "fintech" else "fintech"
    assert isinstance(out[victim], RemoteProtocolError) and what in str(out[victim]), out[victim]
    assert isinstance(out[who], Exception)  # told, not left waiting


def test_a_query_longer_than_declared_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client cannot evaluate more points than the set size it declared."""
    big, small = random_sets(8, 500, 40, 0.5)
    caches = offline(tmp_path, big, small)
    _tamper_mask(monkeypatch, "fintech", lambda pts: pts + pts[:32 * 5])
    out = run_two({"bank": big, "fintech": small}, both(PsiConfig(mode="unbalanced")), caches,
                  catch=(Exception,))
    assert isinstance(out["bank"], RemoteProtocolError) and "declared" in str(out["bank"]), out["bank"]


def test_an_empty_query_and_a_disjoint_one_give_empty_results(tmp_path: Path) -> None:
    """threats row 16 for the unbalanced mode."""
    big, small = random_sets(8, 300, 30, 0.0)
    caches = offline(tmp_path, big, small)
    for query in ([], small):
        out = run_two({"bank": big, "fintech": query}, both(PsiConfig(mode="unbalanced")), caches)
        assert out["bank"].size == out["fintech"].size == 0
        assert len(out["bank"].rows) == len(out["fintech"].rows) == 0
