"""The runners over a Transport: in memory and over gRPC + mTLS, resume, saved halves, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from party import Party, Role
from party.errors import ConfigError, TesseraError
from party.testing import run_parties
from tests.vfl.boost.helpers import credit
from vfl.boost import BoostParams, PassiveBooster
from vfl.boost.evaluation import importance_active, importance_passive
from vfl.boost.runner import (
    export_active,
    export_passive,
    load_active,
    load_passive,
    predict_active,
    predict_passive,
    save_active,
    save_passive,
    train_active,
    train_passive,
)

ROLES = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}
P = BoostParams(n_trees=3, max_depth=3, max_bin=16, min_rows=1)


def _fit(d: dict[str, Any], p: BoostParams, *, ck: Path | None = None, transport: str = "inmemory",
         scheme: str = "plaintext", make_party: Any = None) -> dict[str, Any]:
    def bank(party: Party) -> Any:
        m = train_active(party, ["fintech"], d["ba"], d["y"], p, scheme=scheme, checkpoint_dir=ck,
                         binner=d["bina"], timeout_s=60)
        return m, predict_active(party, m, d["ba"][:50], timeout_s=60)

    def fintech(party: Party) -> Any:
        b = train_passive(party, "bank", d["bp"], checkpoint_dir=ck, binner=d["binp"], timeout_s=60)
        predict_passive(party, "bank", b, d["bp"][:50], timeout_s=60)
        return b

    return run_parties({"bank": bank, "fintech": fintech}, roles=ROLES, timeout_s=120, transport=transport,
                       make_party=make_party)


def _trees(m: Any) -> list[list[dict[str, Any]]]:
    return [[nd.to_dict() for nd in t] for t in m.trees]


def test_train_score_save_load_and_score_again_in_memory(tmp_path: Path) -> None:
    d = credit()
    out = _fit(d, P)
    m, scores = out["bank"]
    b = out["fintech"]
    assert scores.shape == (50,) and 0 < scores.min() < scores.max() < 1
    save_active(tmp_path / "bank.json", m, d["bina"])
    save_passive(tmp_path / "fintech.json", b)
    m2, bina = load_active(tmp_path / "bank.json")
    b2 = load_passive(tmp_path / "fintech.json")
    assert bina is not None and bina.names == d["bina"].names and b2.binner is not None
    assert b2.run_id == m2.run_id == m.run_id  # both halves name the same trained model

    def bank(party: Party) -> Any:
        return predict_active(party, m2, bina.transform(d["xa"][:50]), timeout_s=60)

    def fintech(party: Party) -> None:
        predict_passive(party, "bank", b2, b2.binner.transform(d["xp"][:50]), timeout_s=60)

    again = run_parties({"bank": bank, "fintech": fintech}, roles=ROLES, timeout_s=120)["bank"]
    np.testing.assert_array_equal(again, scores)
    # importance: the active party names only its own features; the passive party its own
    imp = importance_active(m, d["bina"].names)
    assert set(imp["own_features"]) <= set(d["bina"].names) and set(imp["passive_parties"]) <= {"fintech"}
    pimp = importance_passive(b2, d["binp"].names)
    assert pimp and sum(v["splits"] for v in pimp.values()) == imp["passive_parties"]["fintech"]["splits"]


def test_a_half_of_another_model_is_refused(tmp_path: Path) -> None:
    d = credit()
    m, _ = _fit(d, P)["bank"]
    other = PassiveBooster(d["bp"], name="fintech")  # no records: a half of nothing

    def bank(party: Party) -> Any:
        return predict_active(party, m, d["ba"][:10], timeout_s=30)

    def fintech(party: Party) -> None:
        predict_passive(party, "bank", other, d["bp"][:10], timeout_s=30)

    with pytest.raises(TesseraError, match="run"):  # the halves name different runs: the handshake refuses
        run_parties({"bank": bank, "fintech": fintech}, roles=ROLES, timeout_s=60)
    other.run_id = m.run_id  # claims the right run but lacks its records
    with pytest.raises(TesseraError, match="no records"):
        run_parties({"bank": bank, "fintech": fintech}, roles=ROLES, timeout_s=60)
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match=r"not a tessera\.boost\.active"):
        load_active(tmp_path / "x.json")


@pytest.mark.grpc
def test_ou_ciphertexts_over_grpc_give_the_plaintext_trees() -> None:
    d = credit(150)
    p = BoostParams(n_trees=1, max_depth=2, max_bin=16, min_rows=1)
    over = _fit(d, p, transport="grpc", scheme="ou")
    mem = _fit(d, p)
    assert _trees(over["bank"][0]) == _trees(mem["bank"][0])


@pytest.mark.grpc
def test_over_grpc_with_mtls_equals_in_memory() -> None:
    d = credit(200)
    p = BoostParams(n_trees=2, max_depth=3, max_bin=16, min_rows=1)
    over = _fit(d, p, transport="grpc")
    mem = _fit(d, p)
    assert _trees(over["bank"][0]) == _trees(mem["bank"][0])
    np.testing.assert_array_equal(over["bank"][1], mem["bank"][1])


def test_a_peer_that_leaves_mid_tree_resumes_from_the_last_complete_tree(tmp_path: Path, monkeypatch) -> None:
    d = credit()
    real_split = PassiveBooster._split

    def dies_in_tree_1(self: PassiveBooster, m: Any) -> Any:
        if m.tree == 1:
            raise RuntimeError("fintech's machine went down")
        return real_split(self, m)

    monkeypatch.setattr(PassiveBooster, "_split", dies_in_tree_1)
    with pytest.raises(RuntimeError, match="went down"):
        _fit(d, P, ck=tmp_path)
    assert load_passive(tmp_path / "fintech.boost.ckpt.json").done_trees == 1
    assert len(load_active(tmp_path / "bank.boost.ckpt.json")[0].trees) == 1
    monkeypatch.setattr(PassiveBooster, "_split", real_split)
    resumed = _fit(d, P, ck=tmp_path)
    fresh = _fit(d, P)
    assert _trees(resumed["bank"][0]) == _trees(fresh["bank"][0])
    assert resumed["fintech"].table == fresh["fintech"].table
    np.testing.assert_array_equal(resumed["bank"][1], fresh["bank"][1])
    other = BoostParams(n_trees=3, max_depth=2, max_bin=16, min_rows=1)
    with pytest.raises(ConfigError, match="another training"):
        _fit(d, other, ck=tmp_path)


def test_export_to_xgboost_needs_both_consents_and_predicts_the_same(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost", reason="xgboost (extra 'boost') loads the export")
    d = credit()
    out = _fit(d, P)
    (m, ours), b = out["bank"], out["fintech"]

    def run(consent_a: bool, consent_p: bool) -> Any:
        def bank(party: Party) -> Any:
            return export_active(party, m, consent=consent_a, binner=d["bina"], timeout_s=30)

        def fintech(party: Party) -> None:
            export_passive(party, "bank", b, consent=consent_p, timeout_s=30)

        return run_parties({"bank": bank, "fintech": fintech}, roles=ROLES, timeout_s=60)["bank"]

    with pytest.raises(ConfigError, match="fintech did not consent"):
        run(True, False)
    model = run(True, True)
    path = tmp_path / "joint.json"
    path.write_text(json.dumps(model))
    bst = xgb.Booster(model_file=str(path))
    joined = np.concatenate([d["xa"], d["xp"]], 1)
    theirs = bst.predict(xgb.DMatrix(joined[:50], feature_names=bst.feature_names))
    np.testing.assert_allclose(theirs, ours, atol=1e-6)
    from party import InMemoryNetwork

    with pytest.raises(ConfigError, match="consent"):
        export_active(Party("bank", InMemoryNetwork(["bank"]).transport("bank")), m, consent=False,
                      binner=d["bina"])


def _kill_once_and_restart(survivor: Any, killed: Any, kill: Any) -> tuple[Any, Any]:
    """``survivor(rejoin_s=60)`` on a thread; here ``killed()`` with ``kill(mp)`` patched in
    (it dies with SystemExit), then ``killed()`` restarted alone. Returns both results."""
    import threading

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["r"] = survivor(rejoin_s=60)
        except BaseException as e:
            out["err"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    with pytest.MonkeyPatch.context() as mp:
        kill(mp)
        with pytest.raises(SystemExit):
            killed()
    restarted = killed()  # the operator restarts it only
    th.join(60)
    assert "err" not in out, out.get("err")
    return out["r"], restarted


def _bank(net: Any, d: dict[str, Any], ck: Path, **kw: Any) -> Any:
    return train_active(Party("bank", net.transport("bank"), role=Role.ACTIVE), ["fintech"], d["ba"], d["y"], P,
                        scheme="plaintext", checkpoint_dir=ck / "bank", timeout_s=60, **kw)


def _fintech(net: Any, d: dict[str, Any], ck: Path, **kw: Any) -> Any:
    return train_passive(Party("fintech", net.transport("fintech"), role=Role.PASSIVE), "bank", d["bp"],
                         checkpoint_dir=ck / "fintech", timeout_s=60, **kw)


def test_only_the_killed_passive_party_is_restarted_and_the_active_one_waits(tmp_path: Path) -> None:
    from party import InMemoryNetwork

    d = credit()
    fresh = _fit(d, P)
    net = InMemoryNetwork(["bank", "fintech"])
    real_split = PassiveBooster._split

    def killed_in_tree_2(self: PassiveBooster, m: Any) -> Any:
        if m.tree == 2:
            net.disconnect("fintech", "killed (kill -9)")  # dies without a word
            raise SystemExit("killed")
        return real_split(self, m)

    m, b = _kill_once_and_restart(lambda **kw: _bank(net, d, tmp_path, **kw),
                                  lambda: _fintech(net, d, tmp_path),
                                  lambda mp: mp.setattr(PassiveBooster, "_split", killed_in_tree_2))
    assert _trees(m) == _trees(fresh["bank"][0])
    assert b.table == fresh["fintech"].table


def test_only_the_killed_active_party_is_restarted_and_the_passive_one_waits(tmp_path: Path) -> None:
    import vfl.boost.runner as runner
    from party import InMemoryNetwork

    d = credit()
    fresh = _fit(d, P)
    net = InMemoryNetwork(["bank", "fintech"])
    real_save = runner.save_active

    def dies_after_tree_2(path: Any, model: Any, binner: Any, *, checkpoint: bool = False) -> None:
        real_save(path, model, binner, checkpoint=checkpoint)
        if len(model.trees) == 2:
            net.disconnect("bank", "killed (kill -9)")  # dies without a word, its checkpoint written
            raise SystemExit("killed")

    b, m = _kill_once_and_restart(lambda **kw: _fintech(net, d, tmp_path, **kw),
                                  lambda: _bank(net, d, tmp_path),
                                  lambda mp: mp.setattr(runner, "save_active", dies_after_tree_2))
    assert _trees(m) == _trees(fresh["bank"][0])
    assert b.table == fresh["fintech"].table
