"""The full transition tables of FTL's guest and host (party.fsm), pair by pair and as a
training step and a prediction round take them."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from ftl.protocol import GUEST_TRANSITIONS, HOST_TRANSITIONS, FtlGuest, FtlHost, Stage
from he.params import CkksParams
from party.testing import check_transitions, traced, uncovered
from tests.ftl.helpers import small_params, toy


def _calls(sm: Any, table: Any) -> dict[str, Any]:
    def call(name: str) -> Any:
        fn = getattr(type(sm), name)
        n = len(inspect.signature(fn).parameters) - 1
        return lambda m: getattr(m, name)(*([0] * n))

    return {e: call(e) for e in table}


def test_every_pair_of_both_sides() -> None:
    t, p = toy(), small_params()
    g = FtlGuest(t.guest, p, ckks=CkksParams())
    h = FtlHost(t.host, p, ckks=CkksParams())
    for sm, table in ((g, GUEST_TRANSITIONS), (h, HOST_TRANSITIONS)):
        n = check_transitions(lambda sm=sm: copy.copy(sm), _calls(sm, table), Stage)
        assert n == len(table) * len(Stage)


def test_a_step_and_a_prediction_take_the_tables_transitions() -> None:
    t, p = toy(), small_params()
    g = FtlGuest(t.guest, p, ckks=CkksParams(), rng=np.random.default_rng(1))
    h = FtlHost(t.host, p, ckks=CkksParams(), rng=np.random.default_rng(2))
    with traced(g) as gt, traced(h) as ht:
        h.on_hello(g.hello())
        g.on_hello(h.hello())
        gf = g.on_host_forward(h.begin_step(0, 0))
        h.on_guest_backward(g.on_host_backward(h.on_guest_forward(gf)))
        g.model.phi_final = g.finish()
        masked = h.on_enc_phi(g.on_predict_request(h.predict_request(t.host.x[:5])))
        scores = h.on_predict_sums(g.on_predict_masked(masked))
    assert scores.shape == (5,)
    assert uncovered(GUEST_TRANSITIONS, gt) == [] and uncovered(HOST_TRANSITIONS, ht) == []
