"""The SecureBoost machines without a network: against the plaintext reference, XGBoost, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from party.codec import decode, encode
from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from tests.vfl.boost.helpers import credit, global_splits, joined_splits, ref_splits
from vfl.boost import ActiveBooster, Binner, BoostParams, PassiveBooster
from vfl.boost import messages as M
from vfl.boost.crypto import PlainCipher
from vfl.boost.protocol import candidate_cuts, drive
from vfl.boost.tree import fit_reference, sigmoid


def _train(d, p, cipher=None, *, passive_bins=None, active_bins=None, y=None, seed=1):
    act = ActiveBooster(d["ba"] if active_bins is None else active_bins, d["y"] if y is None else y,
                        ["fintech"], p, cipher or PlainCipher(), name="bank")
    pas = PassiveBooster(d["bp"] if passive_bins is None else passive_bins, name="fintech", shuffle_seed=seed)
    m = drive(act.train(), {"fintech": pas})
    return act, pas, m


def test_single_tree_matches_the_plaintext_reference_split_for_split() -> None:
    d = credit()
    p = BoostParams(n_trees=1, max_depth=3, max_bin=16, min_rows=1)
    _act, pas, m = _train(d, p)
    base, trees = fit_reference(np.concatenate([d["ba"], d["bp"]], 1), d["y"], p)
    assert global_splits(m, pas, d["ba"].shape[1]) == ref_splits(trees)
    leaves = [nd.weight for nd in m.trees[0] if nd.is_leaf]
    ref_leaves = [n["leaf"] for n in trees[0].nodes if "leaf" in n]
    np.testing.assert_allclose(leaves, ref_leaves, rtol=1e-7)
    assert any(nd.owner == "fintech" for nd in m.trees[0])  # the passive party's features do compete
    assert base == pytest.approx(m.base)


def test_three_trees_and_prediction_routes_match_the_reference() -> None:
    d = credit()
    p = BoostParams(n_trees=3, max_depth=3, max_bin=16, reg_lambda=2.0, min_child_weight=2.0, gamma=0.1, min_rows=1)
    act, pas, m = _train(d, p)
    joined = np.concatenate([d["ba"], d["bp"]], 1)
    base, trees = fit_reference(joined, d["y"], p)
    assert global_splits(m, pas, d["ba"].shape[1]) == ref_splits(trees)
    ref = sigmoid(base + sum(t.predict(joined) for t in trees))
    routed = drive(act.predict(d["ba"]), {"fintech": pas})
    np.testing.assert_allclose(routed, ref, atol=1e-9)
    # the routes at prediction time are the ones training took
    train_margin = m.base + sum(np.array([nd.weight for nd in t])[lr] for t, lr in zip(m.trees, m.leaf_rows, strict=True))
    np.testing.assert_allclose(routed, sigmoid(train_margin), atol=1e-12)


def test_matches_xgboost_on_the_same_bins() -> None:
    xgb = pytest.importorskip("xgboost", reason="xgboost (extra 'boost') is the reference")
    d = credit()
    p = BoostParams(n_trees=3, max_depth=3, max_bin=16, reg_lambda=1.5, min_child_weight=1.0,
                    learning_rate=0.3, min_rows=1)
    act, pas, _m = _train(d, p)
    ours = drive(act.predict(d["ba"]), {"fintech": pas})
    joined = np.concatenate([d["ba"], d["bp"]], 1).astype(np.float64)
    bst = xgb.train({"objective": "binary:logistic", "eta": 0.3, "max_depth": 3, "lambda": 1.5,
                     "min_child_weight": 1.0, "tree_method": "exact", "base_score": float(d["y"].mean()),
                     "nthread": 1}, xgb.DMatrix(joined, d["y"]), 3)
    np.testing.assert_allclose(ours, bst.predict(xgb.DMatrix(joined)), atol=2e-6)


def test_regression_objective_matches_the_reference() -> None:
    d = credit()
    y = d["xa"][:, 0] * 2.0 + d["xp"][:, 1]  # a target both parties' features explain
    p = BoostParams(n_trees=2, max_depth=3, max_bin=16, objective="reg:squarederror", min_rows=1)
    act, pas, m = _train(d, p, y=y)
    joined = np.concatenate([d["ba"], d["bp"]], 1)
    base, trees = fit_reference(joined, y, p)
    assert global_splits(m, pas, d["ba"].shape[1]) == ref_splits(trees)
    pred = drive(act.predict(d["ba"]), {"fintech": pas})
    np.testing.assert_allclose(pred, base + sum(t.predict(joined) for t in trees), atol=1e-8)


def test_encrypted_and_plaintext_training_give_identical_trees(ou) -> None:
    d = credit(200)
    p = BoostParams(n_trees=2, max_depth=3, max_bin=16, min_rows=1)
    _, pas_he, he = _train(d, p, ou)
    _, pas_pt, pt = _train(d, p)
    assert [[nd.to_dict() for nd in t] for t in he.trees] == [[nd.to_dict() for nd in t] for t in pt.trees]
    assert pas_he.table == pas_pt.table


def test_row_and_column_subsampling_are_used_and_reproducible() -> None:
    d = credit()
    p = BoostParams(n_trees=3, max_depth=3, max_bin=16, subsample=0.6, colsample_bytree=0.5, seed=3, min_rows=1)
    _, pas1, m1 = _train(d, p)
    _, pas2, m2 = _train(d, p)
    assert global_splits(m1, pas1, 13) == global_splits(m2, pas2, 13)
    _, pas3, m3 = _train(d, BoostParams(n_trees=3, max_depth=3, max_bin=16, min_rows=1))
    assert global_splits(m1, pas1, 13) != global_splits(m3, pas3, 13)
    starts = [x for x in pas1.received if isinstance(x, M.TreeStart)]
    assert all(0.4 * 300 < len(s.rows) < 0.8 * 300 for s in starts)  # about 60 % of the rows sampled
    for t in range(3):  # each tree's passive splits use only that tree's sampled columns
        from vfl.boost.schedule import colsample as _colsample

        allowed = set(_colsample(10, 0.5, 3, t, 1).tolist())
        assert {f for f, _b, tr in pas1.table.values() if tr == t} <= allowed


def test_min_rows_bounds_every_sum_the_active_party_decrypts() -> None:
    d = credit()
    k = 25
    act, pas, _m = _train(d, BoostParams(n_trees=2, max_depth=4, max_bin=16, min_rows=k))
    assert pas.sum_sizes and min(min(s) for s in pas.sum_sizes) >= k
    assert act.passive_split_sizes and min(act.passive_split_sizes) >= k
    assert candidate_cuts(np.array([3, 0, 5, 30, 2, 1, 40]), 10) == [3]
    assert candidate_cuts(np.array([10, 0, 10, 10]), 10) == [0, 2]


def test_a_constant_passive_feature_and_a_single_bin_are_never_split() -> None:
    d = credit()
    bp = d["bp"].copy()
    bp[:, 0] = 0  # a constant feature: all rows in one bin
    bp[:, 1] = 5  # all rows in one (non-zero) bin
    _, pas, _m = _train(d, BoostParams(n_trees=2, max_depth=3, max_bin=16, min_rows=1), passive_bins=bp)
    assert {f for f, _b, _t in pas.table.values()}.isdisjoint({0, 1})
    assert Binner.fit(np.ones((10, 1)), max_bin=8).features[0].n_bins == 1


def test_a_passive_party_with_no_candidates_in_any_node_sends_empty_sums() -> None:
    d = credit()
    bp = np.zeros_like(d["bp"])
    _act, pas, m = _train(d, BoostParams(n_trees=2, max_depth=3, max_bin=16, min_rows=1), passive_bins=bp)
    hists = [x for x in pas.received if isinstance(x, M.NodeRequest)]
    assert hists and not pas.table
    assert all(nd.owner in ("", "bank") for t in m.trees for nd in t)
    _, pas0, m0 = _train(d, BoostParams(n_trees=1, max_depth=3, max_bin=16, min_rows=1),
                         passive_bins=np.zeros((len(d["y"]), 0), np.int8))  # a party with no columns at all
    assert not pas0.table and all(nd.owner in ("", "bank") for nd in m0.trees[0])


def test_bad_input_is_refused_with_a_clear_error() -> None:
    d = credit()
    with pytest.raises(ConfigError, match="labels 0/1"):
        ActiveBooster(d["ba"], d["y"] * 2, ["fintech"], BoostParams(), PlainCipher())
    with pytest.raises(ConfigError, match="labels for"):
        ActiveBooster(d["ba"], d["y"][:-1], ["fintech"], BoostParams(), PlainCipher())
    with pytest.raises(ConfigError, match="max_bin"):
        BoostParams(max_bin=200, min_rows=1)
    with pytest.raises(ConfigError, match="passive_depth"):
        BoostParams(mode="layered", max_depth=3, passive_depth=3, min_rows=1)
    with pytest.raises(ConfigError, match="missing or infinite"):
        Binner.fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ConfigError, match="rows"):  # the passive party has other rows
        _train(d, BoostParams(n_trees=1, max_depth=2, max_bin=16, min_rows=1), passive_bins=d["bp"][:-1])
    act = ActiveBooster(d["ba"], d["y"], ["fintech"], BoostParams(n_trees=1, max_bin=16, min_rows=5),
                        PlainCipher())
    with pytest.raises(ConfigError, match="min_rows >= 20"):
        drive(act.train(), {"fintech": PassiveBooster(d["bp"], name="fintech", min_rows_floor=20)})
    pas = PassiveBooster(d["bp"], name="fintech")
    with pytest.raises(LocalProtocolError, match="before the plan"):
        pas.handle(M.SplitRequest(0, [0], [0]))


def test_a_forged_split_index_is_a_remote_protocol_error() -> None:
    d = credit()
    pas = PassiveBooster(d["bp"], name="fintech")
    act = ActiveBooster(d["ba"], d["y"], ["fintech"], BoostParams(n_trees=1, max_depth=2, max_bin=16, min_rows=1), PlainCipher())
    gen = act.train()
    ex = next(gen)
    ex = gen.send({"fintech": pas.handle(ex.sends["fintech"])})
    pas.handle(ex.sends["fintech"])  # TreeStart
    ex = gen.send({})
    pas.handle(ex.sends["fintech"])  # NodeRequest
    with pytest.raises(RemoteProtocolError, match="no candidate 9999"):
        pas.handle(M.SplitRequest(0, [0], [9999]))


def test_every_message_survives_the_codec() -> None:
    d = credit(100)
    act = ActiveBooster(d["ba"], d["y"], ["fintech"], BoostParams(n_trees=2, max_depth=2, max_bin=16, min_rows=1), PlainCipher())
    pas = PassiveBooster(d["bp"], name="fintech")
    gen = act.train()
    seen = set()
    try:
        ex = next(gen)
        while True:
            replies = {}
            for dst, msg in ex.sends.items():
                msg2 = decode(encode(msg))
                assert type(msg2) is type(msg)
                r = pas.handle(msg2)
                seen.add(type(msg).__name__)
                if dst in ex.expect:
                    replies[dst] = decode(encode(r))
                    seen.add(type(r).__name__)
            ex = gen.send(replies)
    except StopIteration:
        pass
    assert {"BoostPlan", "PlanAck", "TreeStart", "NodeRequest", "Histograms", "SplitRequest", "SplitResult",
            "TreeEnd", "Ack", "Finish"} <= seen


def test_two_passive_parties_match_the_reference_on_the_joined_table() -> None:
    d = credit()
    p = BoostParams(n_trees=2, max_depth=3, max_bin=16, min_rows=1)
    b1, b2 = np.ascontiguousarray(d["bp"][:, :5]), np.ascontiguousarray(d["bp"][:, 5:])
    act = ActiveBooster(d["ba"], d["y"], ["p1", "p2"], p, PlainCipher(), name="bank")
    pas = {"p1": PassiveBooster(b1, name="p1", salt=1), "p2": PassiveBooster(b2, name="p2", salt=2)}
    m = drive(act.train(), pas)
    joined = np.concatenate([d["ba"], b1, b2], 1)
    base, trees = fit_reference(joined, d["y"], p)
    assert joined_splits(m, {"p1": (pas["p1"], 13), "p2": (pas["p2"], 13 + 5)}) == ref_splits(trees)
    assert {nd.owner for t in m.trees for nd in t} >= {"p1", "p2"}
    pred = drive(act.predict(d["ba"]), pas)
    np.testing.assert_allclose(pred, sigmoid(base + sum(t.predict(joined) for t in trees)), atol=1e-9)
