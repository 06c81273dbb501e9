"""Distributed DP through a real SecAgg+ round (no network): the transcript test."""

from __future__ import annotations

import math

import numpy as np

from dp import DistributedDP
from dp.secagg import client_input, round_seed, secagg_settings, server_sum
from secure_agg import SecAggParams
from tests.secure_agg.harness import Harness


def test_the_server_only_ever_holds_noised_vectors_and_a_noised_sum():
    n, dim = 6, 3000
    cfg = DistributedDP(dim=dim, clip=1.0, noise_multiplier=1.0, clients=n, threshold=4, bits=16)
    params = SecAggParams(num_clients=n, mode="secagg+", **secagg_settings(cfg))
    h = Harness(n, params, seed=3)
    rng = np.random.default_rng(9)
    updates = {u: rng.normal(size=dim) * 0.1 for u in h.ids}
    seed = round_seed("run-1", 4)
    assert seed == round_seed("run-1", 4) != round_seed("run-1", 5)
    inputs = {u: client_input(cfg, updates[u], seed, np.random.default_rng(i))
              for i, u in enumerate(h.ids)}
    h.xs = dict(inputs)
    h.weights = dict.fromkeys(h.ids, 1)
    seen: dict[str, list] = {}

    def spy(stage, msgs):
        seen[stage] = list(msgs.values())
        return msgs

    res = h.run(drop={h.ids[-1]: "masked_input"}, client_hook=spy)
    survivors = res.survivors
    assert len(survivors) == n - 1
    # SecAgg carried the noised integers exactly
    np.testing.assert_array_equal(res.sum, sum(inputs[u] for u in survivors))
    # what the server decodes is the clean clipped sum plus noise of the calibrated scale
    clean = sum(updates[u] / max(1.0, np.linalg.norm(updates[u])) for u in survivors)
    got = server_sum(cfg, res.sum, seed)
    err = got - clean
    want = cfg.sum_noise_std**2 * len(survivors) / n  # one client's noise is missing
    assert abs(err.var() / want - 1) < 5 * math.sqrt(2 / dim) + 0.01
    # no masked vector the server received is (close to) a client's noised input, let
    # alone its clean update: the masks hide each one
    for msg in seen["masked_input"]:
        vec = msg.y.view(np.int32).astype(np.float64)  # the centred lift mod 2**32
        for u in survivors:
            assert np.mean(np.abs(vec[: cfg.padded] - inputs[u]) < 1) < 0.01
