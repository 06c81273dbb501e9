"""Who learns what: the messages each party receives, in each privacy mode."""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.vfl.boost.helpers import credit
from vfl.boost import ActiveBooster, BoostParams, PassiveBooster
from vfl.boost import messages as M
from vfl.boost.crypto import PlainCipher
from vfl.boost.protocol import drive

PASSIVE_GETS = {M.BoostPlan, M.TreeStart, M.NodeRequest, M.SplitRequest, M.TreeEnd, M.Finish}


def _run(mode: str, n_trees: int = 2, **kw):
    d = credit()
    p = BoostParams(n_trees=n_trees, max_depth=4, max_bin=16, mode=mode, **kw)
    act = ActiveBooster(d["ba"], d["y"], ["fintech"], p, PlainCipher(), name="bank")
    pas = PassiveBooster(d["bp"], name="fintech", shuffle_seed=0)
    replies: list = []

    class Spy:
        def handle(self, msg):
            r = pas.handle(msg)
            if r is not None:
                replies.append(r)
            return r

    m = drive(act.train(), {"fintech": Spy()})
    return d, m, pas, replies


def _own_partition_only(bp: np.ndarray, req: M.NodeRequest) -> bool:
    """True when rows with the same passive feature values always share a node (nothing foreign)."""
    pos = np.asarray(req.position)
    seen: dict[bytes, int] = {}
    for r in range(len(bp)):
        if pos[r] < 0:
            continue
        key = bp[r].tobytes()
        if seen.setdefault(key, int(pos[r])) != int(pos[r]):
            return False
    return True


def test_classic_mode_shows_the_passive_party_the_active_partition() -> None:
    """The documented leak of classic SecureBoost: node positions below an active split."""
    d, m, pas, _ = _run("classic")
    assert {type(x) for x in pas.received} <= PASSIVE_GETS
    reqs = [x for x in pas.received if isinstance(x, M.NodeRequest)]
    assert any(nd.owner == "bank" for t in m.trees for nd in t)
    assert not all(_own_partition_only(d["bp"], r) for r in reqs)


def test_layered_mode_shows_the_passive_party_only_its_own_partition() -> None:
    d, m, pas, _ = _run("layered", passive_depth=2)
    reqs = [x for x in pas.received if isinstance(x, M.NodeRequest)]
    assert reqs and all(r.depth < 2 for r in reqs)  # never asked below its layers
    assert all(_own_partition_only(d["bp"], r) for r in reqs)
    for t in m.trees:  # top layers: the passive party's features; below: the active party's
        for nd in t:
            if not nd.is_leaf:
                assert nd.owner == ("fintech" if nd.depth < 2 else "bank")


def test_mix_mode_builds_each_tree_from_one_party() -> None:
    d, m, pas, _ = _run("mix", n_trees=4)
    owners = [{nd.owner for nd in t if not nd.is_leaf} for t in m.trees]
    assert owners[0] <= {"bank"} and owners[2] <= {"bank"}
    assert owners[1] <= {"fintech"} and owners[3] <= {"fintech"}
    starts = [x for x in pas.received if isinstance(x, M.TreeStart)]
    assert [len(s.gh) > 0 for s in starts] == [False, True, False, True]  # no gradients for the bank's trees
    reqs = [x for x in pas.received if isinstance(x, M.NodeRequest)]
    assert {r.tree for r in reqs} == {1, 3}
    assert all(_own_partition_only(d["bp"], r) for r in reqs)


def test_the_passive_party_never_receives_labels_gradients_or_thresholds(ou) -> None:
    d = credit(120)
    p = BoostParams(n_trees=1, max_depth=2, max_bin=16, min_rows=1)
    act = ActiveBooster(d["ba"], d["y"], ["fintech"], p, ou, name="bank")
    pas = PassiveBooster(d["bp"], name="fintech")
    drive(act.train(), {"fintech": pas})
    assert {type(x) for x in pas.received} <= PASSIVE_GETS
    for msg in pas.received:
        for f in dataclasses.fields(msg):
            v = getattr(msg, f.name)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                raise AssertionError(f"{type(msg).__name__}.{f.name} carries floats")
    start = next(x for x in pas.received if isinstance(x, M.TreeStart))
    assert len(start.gh) > 100 * len(start.rows)  # ciphertexts (hundreds of bytes a row), not packed numbers
    # split requests carry candidate indices only (no thresholds, no gains)
    assert {f.name for f in dataclasses.fields(M.SplitRequest)} == {"tree", "nodes", "candidates"}


def test_the_active_party_receives_only_shuffled_sums_over_min_rows() -> None:
    k = 20
    _d, _m, pas, replies = _run("classic", min_rows=k)
    kinds = {type(r) for r in replies}
    assert kinds <= {M.PlanAck, M.Histograms, M.SplitResult, M.Ack}
    hists = [r for r in replies if isinstance(r, M.Histograms)]
    assert {f.name for f in dataclasses.fields(M.Histograms)} == {"tree", "nodes", "sums", "counts"}
    assert hists and all(min(s) >= k for s in pas.sum_sizes)
    # the candidate order is shuffled: not the (feature, bin) order the passive party holds
    orders = [c for c in pas._cands.values() if len(c) > 2]
    assert orders and any(c != sorted(c) for c in orders)
