"""dp.noise's discrete-Gaussian sampler: the sparse acceptance test has the law of the dense one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dp import noise


@pytest.mark.parametrize("sparse", [False, True])
def test_rejection_rate_matches_theory_in_both_acceptance_paths(
        monkeypatch: pytest.MonkeyPatch, sparse: bool) -> None:
    # accept probability is exp(-1/(8 sigma^2)) * sum_y phi_sigma(y) = exp(-1/(8 sigma^2))
    # (the sum is 1 to 1e-300 at sigma 20); sigma 20 puts p = P(E < sure) near 0.008
    sigma, m = 20.0, 4_000_000
    monkeypatch.setattr(noise, "SPARSE_BELOW", 1.0 if sparse else 0.0)
    rng = np.random.default_rng(7)
    _, ok = noise._dg_candidates(m, sigma, rng)
    rate = 1 - math.exp(-1 / (8 * sigma * sigma))
    se = math.sqrt(rate * (1 - rate) / m)
    assert abs((~ok).mean() - rate) < 5 * se, ((~ok).mean(), rate)


class _Counting:
    """A Generator stand-in that counts the dense exponential draws."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.exponentials = 0

    def standard_exponential(self, *a: object, **k: object) -> object:
        self.exponentials += 1
        return self.rng.standard_exponential(*a, **k)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.rng, name)


def test_sparse_path_is_taken_at_large_sigma_and_draws_exact_moments() -> None:
    sigma, m = 1000.0, 1_000_000
    rng = _Counting(3)
    x = noise.discrete_gaussian(sigma, m, rng)  # type: ignore[arg-type]
    assert rng.exponentials == 0  # no dense exponentials at this sigma
    assert abs(x.mean()) < 5 * sigma / math.sqrt(m)
    assert abs(x.var() / sigma**2 - 1) < 5 * math.sqrt(2 / m)
