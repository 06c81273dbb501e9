"""Join types (psi.join) against a plain set computation, over ECDH in memory; mismatches named."""

from __future__ import annotations

import numpy as np
import pytest

from party.errors import ConfigError
from party.handshake import RunMismatch
from party.testing import run_parties
from psi import PsiConfig, run_psi
from psi.join import PLACEHOLDER, join_rows
from psi.protocol import JOINS
from tests.psi.helpers import random_sets


def expected_layout(join: str, a: list[str], b: list[str], order: list[str]) -> tuple[list, list]:
    """Each party's output IDs (None = placeholder) by plain set operations; ``order`` is the
    shared IDs in the agreed order, ``a`` is the left party."""
    sa, sb = set(a), set(b)
    a_only = [x for x in a if x not in sb]  # input order
    b_only = [x for x in b if x not in sa]
    assert set(order) == sa & sb
    holes_a, holes_b = [None] * len(b_only), [None] * len(a_only)
    return {
        "inner": (order, order),
        "left": (order + a_only, order + holes_b),
        "right": (order + holes_a, order + b_only),
        "full": (order + a_only + holes_a, order + holes_b + b_only),
        "difference": (a_only, b_only),
    }[join]


def ids_of(ids: list[str], rows: np.ndarray) -> list[str | None]:
    return [ids[i] if i != PLACEHOLDER else None for i in rows.tolist()]


def check_join_outputs(join: str, a: list[str], b: list[str], ra: np.ndarray, rb: np.ndarray) -> None:
    """ra, rb: the outputs of the left party (a) and the other (b)."""
    got_a, got_b = ids_of(a, ra), ids_of(b, rb)
    inner_len = len(set(a) & set(b))
    order = got_a[:inner_len] if join != "difference" else sorted(set(a) & set(b))
    exp_a, exp_b = expected_layout(join, a, b, order)
    assert got_a == exp_a
    assert got_b == exp_b
    if join != "difference":  # row i is the same customer at both parties
        assert all(x == y or x is None or y is None for x, y in zip(got_a, got_b, strict=True))


@pytest.mark.parametrize("join", JOINS)
@pytest.mark.parametrize(("overlap", "na", "nb"), [(0.0, 60, 90), (0.5, 120, 80), (1.0, 70, 70)])
def test_each_join_over_ecdh_matches_the_set_computation(join: str, overlap: float, na: int, nb: int) -> None:
    a, b = random_sets(int(overlap * 10) + na, na, nb, overlap)
    cfg = PsiConfig(join=join, chunk_points=32)
    out = run_parties({
        "bank": lambda p: run_psi(p, a, config=cfg, timeout_s=30, workers=0),
        "fintech": lambda p: run_psi(p, b, config=cfg, timeout_s=30, workers=0),
    })
    check_join_outputs(join, a, b, out["bank"].rows, out["fintech"].rows)
    assert out["bank"].join == join and out["bank"].size == len(set(a) & set(b))


def test_left_can_be_named() -> None:
    a, b = random_sets(5, 40, 30, 0.5)
    cfg = PsiConfig(join="left", left="fintech", chunk_points=32)
    out = run_parties({
        "bank": lambda p: run_psi(p, a, config=cfg, timeout_s=30, workers=0),
        "fintech": lambda p: run_psi(p, b, config=cfg, timeout_s=30, workers=0),
    })
    check_join_outputs("left", b, a, out["fintech"].rows, out["bank"].rows)  # fintech is left


def test_join_rows_is_pure_layout() -> None:
    shared = np.array([4, 0, 2])
    assert join_rows(shared, 5, 4, join="full", is_left=True).tolist() == [4, 0, 2, 1, 3, -1]
    assert join_rows(shared, 5, 4, join="full", is_left=False).tolist() == [4, 0, 2, -1, 1, 3]
    assert join_rows(shared, 5, 4, join="difference", is_left=False).tolist() == [1, 3]
    with pytest.raises(ConfigError, match="cannot come from"):
        join_rows(shared, 5, 2, join="left", is_left=True)


@pytest.mark.parametrize(("kw", "match"), [
    ({"join": "left", "mode": "one"}, "needs mode 'both'"),
    ({"join": "sideways"}, "join must be one of"),
    ({"protocol": "rr23"}, "protocol must be one of"),
    ({"left": "bank"}, "only meaningful with join"),
    ({"protocol": "rr22", "mode": "cardinality"}, "only available with protocol 'ecdh'"),
])
def test_bad_join_or_protocol_settings(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PsiConfig(**kw)


def test_outer_join_needs_two_parties() -> None:
    from party import InMemoryNetwork, Party

    net = InMemoryNetwork(["a", "b", "c"])
    with pytest.raises(ConfigError, match="exactly two parties"):
        run_psi(Party("a", net.transport("a")), ["x"], config=PsiConfig(join="full"), timeout_s=1)
    assert net.transport("a").stats.snapshot()["messages_sent"] == 0


@pytest.mark.parametrize(("theirs", "field"), [
    (PsiConfig(join="left"), "info.join"),
    (PsiConfig(join="left", left="fintech"), "info.left"),
])
def test_a_peer_on_another_join_type_is_named(theirs: PsiConfig, field: str) -> None:
    a, b = random_sets(7, 20, 20, 0.5)

    def run(ids: list[str], cfg: PsiConfig):
        def f(p):
            try:
                return run_psi(p, ids, config=cfg, timeout_s=20, workers=0)
            except RunMismatch as e:
                return e
        return f

    out = run_parties({"bank": run(a, PsiConfig(join="left", left="bank") if field == "info.left"
                                   else PsiConfig()),
                       "fintech": run(b, theirs)})
    for e in out.values():
        assert isinstance(e, RunMismatch), e
        assert field in str(e)
