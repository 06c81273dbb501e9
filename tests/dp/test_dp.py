"""dp: rotation, integer noise, the distributed-DP pipeline and the accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dp import DistributedDP, accounting
from dp.noise import discrete_gaussian, sample, skellam
from dp.rotation import block_size, fwht, padded_dim, padded_len, rotate, unrotate
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
    # 512 = 8·8·8 takes all three kinds of small product; 2048 = 16·16·8
    for n in (2, 32, 512, 2048):
        w = np.random.default_rng(n).normal(size=n)
        np.testing.assert_allclose(fwht(w), hadamard(n) @ w / math.sqrt(n), atol=1e-11)
    spike = np.zeros(4096)
    spike[3] = 10.0
    y = rotate(spike, seed=3)
    np.testing.assert_allclose(np.abs(y), 10.0 / 64, rtol=1e-12)  # perfectly flat
    assert padded_dim(1) == 1 and padded_dim(1025) == 2048


def test_block_rotation_keeps_the_norm_inverts_exactly_and_pads_little():
    rng = np.random.default_rng(11)
    d, block = 5000, 1024
    x = rng.normal(size=d)
    y = rotate(x, seed=5, block=block)
    assert y.shape == (5120,) == (padded_len(d, block),)  # a multiple of the block, not 8192
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    np.testing.assert_allclose(unrotate(y, 5, d, block), x, atol=1e-12)
    # each block is its own orthonormal Hadamard transform of the sign-flipped slice:
    # a spike in block 2 stays in block 2, flat at |x| / sqrt(B)
    spike = np.zeros(d)
    spike[2 * block + 17] = 3.0
    z = rotate(spike, seed=5, block=block)
    np.testing.assert_allclose(np.abs(z[2 * block : 3 * block]), 3.0 / 32, rtol=1e-12)
    assert not z[: 2 * block].any() and not z[3 * block :].any()
    # the blocks have different sign diagonals (slices of one seeded Rademacher vector)
    ones = np.ones(2 * block)
    w = rotate(ones, seed=5, block=block)
    assert not np.allclose(w[:block], w[block:])
    with pytest.raises(ValueError, match="power of two"):
        rotate(x, 5, block=1000)
    with pytest.raises(ValueError, match="does not match dimension"):
        unrotate(y, 5, d)  # one block of 8192 is another rotation


def test_block_size_pads_under_one_percent_for_large_models():
    # the MNIST CNN and 2NN, and a large model: at most 1 % padding
    for d in (1_663_370, 199_210, 10_000_000):
        b = block_size(d)
        assert b & (b - 1) == 0 and 1 << 10 <= b <= 1 << 15
        assert padded_len(d, b) - d <= 0.01 * d
    assert padded_len(1_663_370, block_size(1_663_370)) == 1_671_168  # vs 2**21 in one block
    assert block_size(1_663_370) == 1 << 15  # the largest block that pads little
    assert block_size(1000) == 1024 and padded_len(1000) == 1024  # small: one block
    cfg = DistributedDP(dim=1_663_370, clip=1.0, noise_multiplier=1.0, clients=10)
    assert cfg.rotation_block == 1 << 15 and cfg.padded == 1_671_168
    with pytest.raises(ConfigError, match="block"):
        DistributedDP(dim=100, clip=1.0, noise_multiplier=1.0, clients=3, block=100)


# -- noise ------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.0, 3.0, 40.0])
def test_discrete_gaussian_has_the_right_pmf_and_variance(sigma):
    # sigma < 1: the Canonne-Kamath-Steinke sampler; sigma >= 1: the rounded Gaussian
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


def test_discrete_gaussian_at_a_large_sigma():
    """The sigma distributed DP uses (hundreds to thousands): variance and tails."""
    from dp.noise import _dg_candidates

    sigma = 1000.0
    rng = np.random.default_rng(12)
    x = discrete_gaussian(sigma, 400_000, rng)
    assert x.dtype == np.int64
    # N_Z(0, s²) has variance s² to within exp(-2 pi² s²) at this sigma
    assert x.var() == pytest.approx(sigma**2, rel=5 * math.sqrt(2 / x.size))
    assert abs(x.mean()) < 4 * sigma / math.sqrt(x.size)
    assert abs(stats.kurtosis(x)) < 5 * math.sqrt(24 / x.size)  # Gaussian tails
    # the rounded proposals are accepted at the rate the proof gives, exp(-1/(8 s²))
    for s, n in ((1.0, 400_000), (2.0, 400_000)):
        ok = _dg_candidates(n, s, rng)[1]
        c = math.exp(-1 / (8 * s * s))
        theta = sum(math.exp(-k * k / (2 * s * s)) for k in range(-20, 21)) / (s * math.sqrt(2 * math.pi))
        assert ok.mean() == pytest.approx(c * theta, abs=4 * math.sqrt(0.25 / n))


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


def test_overflow_bound_holds_for_a_sum_packed_into_one_block():
    """The flattening bound is per block: a sum whose whole norm sits in one block of B
    has coordinates near |sum|/sqrt(B), far above the |sum|/sqrt(D) a whole-vector
    bound would assume; the check sizes gamma for the former, so nothing wraps."""
    n, d, block = 4, 1 << 14, 64
    cfg = DistributedDP(dim=d, clip=1.0, noise_multiplier=0.0, clients=n, bits=12, block=block)
    rng = np.random.default_rng(13)
    x = np.zeros(d)
    x[:block] = rng.normal(size=block)
    x /= np.linalg.norm(x)  # norm = clip, all of it in block 0; every client sends it
    seed = 21
    peak = float(np.abs(rotate(x, seed, block) * (n / cfg.gamma)).max())
    lg = math.log(4 * cfg.padded / cfg.overflow_prob)
    assert peak > n / cfg.gamma * math.sqrt(2 * lg / cfg.padded)  # a D-wide bound is unsound
    assert peak + n <= cfg.sum_bound(cfg.gamma) < cfg.modulus // 2  # the block bound holds
    parts = [cfg.encode_centred(x, seed, rng) for _ in range(n)]
    total = sum(parts)
    assert np.abs(total).max() < cfg.modulus // 2  # no wrap in the real sum
    back = cfg.decode(np.mod(total, 1 << 32).astype(np.uint64), seed)
    assert np.linalg.norm(back - n * x) <= n * cfg.gamma * math.sqrt(cfg.padded)


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
