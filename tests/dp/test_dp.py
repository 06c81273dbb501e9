"""dp: rotation, integer noise, the distributed-DP pipeline and the accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dp import DistributedDP, accounting
from dp.noise import discrete_gaussian, sample, skellam
from dp.rotation import fwht, padded_dim, rotate, unrotate
from party.errors import ConfigError


# -- rotation ---------------------------------------------------------------------------
def test_rotation_is_orthogonal_and_inverts_exactly():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    y = rotate(x, seed=7)
    assert y.shape == (1024,)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    np.testing.assert_allclose(unrotate(y, 7, 1000), x, atol=1e-12)
    # another seed is another rotation
    assert not np.allclose(rotate(x, 8), y)
    with pytest.raises(ValueError, match="does not match dimension"):
        unrotate(y, 7, 2000)


def test_hadamard_matches_the_dense_matrix_and_flattens_a_spike():
    from scipy.linalg import hadamard

    v = np.random.default_rng(2).normal(size=64)
    np.testing.assert_allclose(fwht(v), hadamard(64) @ v / 8, atol=1e-12)
    spike = np.zeros(4096)
    spike[3] = 10.0
    y = rotate(spike, seed=3)
    np.testing.assert_allclose(np.abs(y), 10.0 / 64, rtol=1e-12)  # perfectly flat
    assert padded_dim(1) == 1 and padded_dim(1025) == 2048


# -- noise ------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.8, 3.0, 40.0])
def test_discrete_gaussian_has_the_right_pmf_and_variance(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    x = discrete_gaussian(sigma, 200_000, rng)
    ks = np.arange(-int(6 * sigma) - 2, int(6 * sigma) + 3)
    w = np.exp(-(ks.astype(float) ** 2) / (2 * sigma**2))
    w /= w.sum()
    var = float((w * ks**2).sum())  # the discrete Gaussian's own variance (<= sigma²)
    assert x.var() == pytest.approx(var, rel=0.02)
    assert abs(x.mean()) < 4 * math.sqrt(var / x.size)
    counts = np.array([(x == k).sum() for k in ks])
    keep = w * x.size > 20
    chi = stats.chisquare(counts[keep], w[keep] / w[keep].sum() * counts[keep].sum())
    assert chi.pvalue > 1e-3


def test_sum_of_skellams_is_skellam():
    rng = np.random.default_rng(4)
    n, mu, size = 8, 50.0, 100_000
    total = sum(skellam(mu / n, size, rng) for _ in range(n))
    ks = np.arange(-40, 41)
    pmf = stats.skellam.pmf(ks, mu / 2, mu / 2)
    counts = np.array([(total == k).sum() for k in ks])
    chi = stats.chisquare(counts, pmf / pmf.sum() * counts.sum())
    assert chi.pvalue > 1e-3
    assert total.var() == pytest.approx(mu, rel=0.03)
    with pytest.raises(ValueError, match="noise kind"):
        sample("laplace", 1.0, 3, rng)


# -- distributed DP ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gaussian", "skellam"])
def test_aggregated_noise_has_the_target_variance(kind):
    """Across many seeds, the noise in the decoded sum has the calibrated variance."""
    cfg = DistributedDP(dim=200, clip=1.0, noise_multiplier=1.2, clients=5, bits=16, kind=kind)
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=200) for _ in range(5)]
    clipped = sum(x / max(1.0, np.linalg.norm(x)) for x in xs)
    errs = []
    for seed in range(60):
        tot = sum(cfg.encode(x, seed, rng).astype(np.uint64) for x in xs) % (1 << 32)
        errs.append(cfg.decode(tot, seed) - clipped)
    e = np.concatenate(errs)
    # rounding adds at most n·γ²/4 per coordinate on top of the noise
    target = cfg.sum_noise_std**2
    tol = 5 * math.sqrt(2 / e.size) * target  # five standard errors of a variance
    assert target - tol <= e.var() <= target + tol + 5 * cfg.gamma**2 / 4
    assert abs(e.mean()) < 4 * math.sqrt(e.var() / e.size)


def test_clipping_holds_after_rotation_and_rounding():
    cfg = DistributedDP(dim=300, clip=0.5, noise_multiplier=0.0, clients=3, bits=20)
    rng = np.random.default_rng(6)
    big = rng.normal(size=300) * 100
    for seed in range(20):
        q = cfg.lift(cfg.encode(big, seed, rng)).astype(float)
        assert np.linalg.norm(q) <= cfg.l2 + 1e-9  # the hard sensitivity bound
        back = cfg.decode(cfg.encode(big, seed, rng), seed)
        np.testing.assert_allclose(
            back, big * 0.5 / np.linalg.norm(big), atol=cfg.gamma * math.sqrt(cfg.padded)
        )
    with pytest.raises(ValueError, match="NaN"):
        cfg.encode(np.full(300, np.nan), 0, rng)
    with pytest.raises(ValueError, match="dim"):
        cfg.encode(np.zeros(10), 0, rng)


def test_modular_boundaries_are_exact():
    cfg = DistributedDP(dim=4, clip=1.0, noise_multiplier=0.5, clients=2, bits=8)
    m = 256
    lifted = cfg.lift(np.array([0, 127, 128, 255, 256 + 127, (1 << 32) - 1], dtype=np.uint64))
    assert lifted.tolist() == [0, 127, -128, -1, 127, -1]
    # the check passes strictly below m/2 and refuses at it
    g = cfg.gamma
    assert cfg.sum_bound(g) < m // 2
    lo = g
    while cfg.sum_bound(lo) < m // 2:
        lo /= 1.01
    with pytest.raises(ConfigError, match="overflow"):
        DistributedDP(dim=4, clip=1.0, noise_multiplier=0.5, clients=2, bits=8, granularity=lo)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="no granularity fits"):
        DistributedDP(dim=1 << 16, clip=1.0, noise_multiplier=50.0, clients=100, bits=8)
    with pytest.raises(ConfigError, match="threshold"):
        DistributedDP(dim=8, clip=1.0, noise_multiplier=1.0, clients=3, threshold=4)
    with pytest.raises(ConfigError, match="kind"):
        DistributedDP(dim=8, clip=1.0, noise_multiplier=1.0, clients=3, kind="laplace")
    with pytest.raises(ConfigError, match="bits"):
        DistributedDP(dim=8, clip=1.0, noise_multiplier=1.0, clients=3, bits=40)


def test_sixteen_bits_fit_a_million_parameters():
    cfg = DistributedDP(dim=1_200_000, clip=1.0, noise_multiplier=1.0, clients=10, bits=16)
    # rounding inflates the sensitivity by under 5% at the granularity picked
    assert cfg.l2 * cfg.gamma / cfg.clip < 1.05


# -- accounting -------------------------------------------------------------------------
def test_accountant_matches_published_values():
    # dp-accounting's own example: sigma 4.530877117 gives exactly (1, 1e-6)-DP in one step
    assert accounting.central_epsilon(4.530877117, 1.0, 1, 1e-6) == pytest.approx(1.0, abs=1e-3)
    # Abadi et al. 2016 §3.1: q=0.01, sigma=4, T=10^4, delta=1e-5 -> eps ~1.26 with the
    # moments accountant; RDP is at least as tight
    eps = accounting.central_epsilon(4.0, 0.01, 10_000, 1e-5)
    assert 0.9 < eps <= 1.26
    z = accounting.central_noise_for(3.0, 1e-5, 100, 0.1)
    assert accounting.central_epsilon(z, 0.1, 100, 1e-5) <= 3.0
    assert accounting.central_epsilon(z * 0.97, 0.1, 100, 1e-5) > 3.0


def test_distributed_accounting_tends_to_the_gaussian_and_worsens_with_dropouts():
    sigma, n, l2 = 100.0, 10, 50.0
    assert accounting.ddgauss_rho(sigma, n, l2, l2 * l2) == pytest.approx(
        l2**2 / (2 * n * sigma**2), rel=1e-9
    )
    cfg = DistributedDP(dim=1000, clip=1.0, noise_multiplier=1.0, clients=10, threshold=6)
    full = cfg.epsilon(10, 1e-5, survivors=10)
    worst = cfg.epsilon(10, 1e-5)
    assert worst > full > 0
    sk = DistributedDP(dim=1000, clip=1.0, noise_multiplier=1.0, clients=10, kind="skellam")
    assert sk.epsilon(10, 1e-5) == pytest.approx(full, rel=0.1)
    ledger = accounting.Ledger(1e-5, lambda r: cfg.epsilon(r, 1e-5))
    inc1, tot1 = ledger.step()
    inc2, tot2 = ledger.step()
    assert tot1 == inc1 and tot2 == pytest.approx(tot1 + inc2) and tot2 > tot1


def test_central_accountant_composes_rounds_and_replays_a_checkpoint():
    acc = accounting.CentralAccountant(1e-5)
    for _ in range(5):
        inc, tot = acc.step(1.1, 0.1)
        assert inc > 0
    assert tot == pytest.approx(accounting.central_epsilon(1.1, 0.1, 5, 1e-5), rel=1e-9)
    again = accounting.CentralAccountant(1e-5)
    again.restore(acc.steps)
    assert again.total == pytest.approx(tot) and again.steps == acc.steps
    assert acc.step(0.0, 0.1) == (pytest.approx(math.inf), math.inf)
    assert acc.step(1.0, 0.1) == (0.0, math.inf)
    with pytest.raises(ConfigError, match="sampling rate"):
        acc.step(1.0, 0.0)
