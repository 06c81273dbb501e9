"""SecAgg+ graph failure rate in simulation (threats.md row 13)."""

from __future__ import annotations

import numpy as np
import pytest

from secure_agg import SecAggParams, graph
from secure_agg.params import find_degree


def _holder_index(ids: list[str], k: int, seed: bytes) -> np.ndarray:
    g = graph.neighbours(ids, k, seed)
    pos = {u: i for i, u in enumerate(ids)}
    return np.array([[pos[u], *sorted(pos[v] for v in g[u])] for u in ids])  # (n, k+1)


def _failure_rate(params: SecAggParams, drop: float, trials: int, rng: np.random.Generator) -> float:
    """Fraction of rounds in which some surviving client keeps < t live share holders."""
    n = params.num_clients
    ids = [f"c{i}" for i in range(n)]
    fails = 0
    batch = 500
    for start in range(0, trials, batch):
        b = min(batch, trials - start)
        holders = _holder_index(ids, params.degree, rng.bytes(32))  # a fresh graph per batch
        alive = rng.random((b, n)) >= drop
        live = alive[:, holders].sum(axis=2)  # (b, n): live holders of each client
        fails += int(((live < params.t) & alive).any(axis=1).sum())
    return fails / trials


def test_found_graph_for_1000_clients_meets_its_bound_at_10_percent_dropout() -> None:
    default = SecAggParams(num_clients=1000, vector_length=1, dropout_fraction=0.1)
    assert (default.degree, default.t) == (30, 16)
    assert default.failure_bound() > 2**-20  # ceil(3 log2 n) alone is not enough at 10%
    k = find_degree(1000, 0.1)
    params = SecAggParams(num_clients=1000, vector_length=1, neighbours=k, dropout_fraction=0.1)
    assert (params.degree, params.t) == (34, 18)
    assert params.failure_bound() <= 2**-20  # the correctness parameter Google's finder uses
    rate = _failure_rate(params, 0.1, 4000, np.random.default_rng(0))
    # 4000 trials cannot show 2**-20, but any failure at all would contradict the bound
    assert rate == 0.0


@pytest.mark.parametrize(("k", "drop"), [(10, 0.35), (14, 0.4)])
def test_empirical_failure_rate_stays_below_the_union_bound(k: int, drop: float) -> None:
    params = SecAggParams(num_clients=200, vector_length=1, neighbours=k, dropout_fraction=0.0)
    rate = _failure_rate(params, drop, 3000, np.random.default_rng(1))
    bound = params.failure_bound(drop)
    assert 0.0 < rate <= bound  # the regime is chosen so that failures do happen
