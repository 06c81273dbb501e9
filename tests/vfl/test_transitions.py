"""The full transition tables of the CKKS split layer (party.fsm), pair by pair and as a
training step and an evaluation pass take them."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from party.testing import check_transitions, traced, uncovered
from vfl.he import ActiveLayer, CkksParams, PassiveLayer, Stage
from vfl.he.layer import ACTIVE_TRANSITIONS, PASSIVE_TRANSITIONS

D, K = 4, 3


def _pair() -> tuple[PassiveLayer, ActiveLayer]:
    params = CkksParams()
    w0 = np.random.default_rng(0).normal(0, 0.5, (D, K))
    p = PassiveLayer(params, w0, lr=0.05, momentum=0.9, rng=np.random.default_rng(1))
    a = ActiveLayer(params, D, K, lr=0.05, momentum=0.9, rng=np.random.default_rng(2))
    return p, a


def test_every_pair_of_both_roles() -> None:
    p, a = _pair()  # one key pair each; every pair is driven on a shallow copy
    h = np.zeros((2, D))
    passive: dict[str, Any] = {
        "on_public_context": lambda m: m.on_public_context(None),
        "forward[train]": lambda m: m.forward(h, train=True),
        "forward[eval]": lambda m: m.forward(h, train=False),
        "on_masked_forward": lambda m: m.on_masked_forward(None),
        "on_masked_gradient": lambda m: m.on_masked_gradient(None),
        "on_grad_share": lambda m: m.on_grad_share(None),
        "abort": lambda m: m.abort(),
    }
    active: dict[str, Any] = {
        "on_public_context": lambda m: m.on_public_context(None),
        "on_activations[train]": lambda m: m.on_activations(None),
        "on_activations[eval]": lambda m: m.on_activations(None),
        "on_forward_share": lambda m: m.on_forward_share(None),
        "backward": lambda m: m.backward(None),
        "on_masked_backward": lambda m: m.on_masked_backward(None),
        "abort": lambda m: m.abort(),
    }
    assert check_transitions(lambda: copy.copy(p), passive, Stage) == len(PASSIVE_TRANSITIONS) * len(Stage)
    assert check_transitions(lambda: copy.copy(a), active, Stage) == len(ACTIVE_TRANSITIONS) * len(Stage)


def test_a_training_step_and_an_evaluation_pass_take_the_tables_transitions() -> None:
    p, a = _pair()
    rng = np.random.default_rng(3)
    h = rng.uniform(-1, 1, (6, D))
    with traced(p) as pt, traced(a) as at:
        p.on_public_context(a.public_context())
        a.on_public_context(p.public_context())
        for train in (False, True):
            z = a.on_forward_share(p.on_masked_forward(a.on_activations(p.forward(h, train=train))))
            assert z.shape == (6, K)
        g = p.on_grad_share(a.on_masked_backward(p.on_masked_gradient(a.backward(np.ones((6, K))))))
        assert g.shape == (6, D)
        p.on_public_context(a.public_context())  # a repeated context (after a rotation) loops
        a.on_public_context(p.public_context())
    assert p.stage is Stage.IDLE and a.stage is Stage.IDLE
    # abort() (forget a half-done step) is allowed in every stage; check_transitions drives it
    assert [u for u in uncovered(PASSIVE_TRANSITIONS, pt) if not u.startswith("abort ")] == []
    assert [u for u in uncovered(ACTIVE_TRANSITIONS, at) if not u.startswith("abort ")] == []
