"""Integer noise for distributed DP: the discrete Gaussian and the Skellam distribution.

Both live on the integers, so a client can add them to its quantised update *before*
secure aggregation, and the sum the server unmasks already carries the noise.

- **Discrete Gaussian** ``N_Z(0, σ²)``: ``P(x) ∝ exp(-x²/(2σ²))`` on ℤ. Sampled exactly
  (up to the float normals and exponentials) by rounding a continuous Gaussian and
  rejecting with a correction that depends on the rounding error
  (:func:`_dg_candidates` has the proof); accepted with probability about
  ``exp(-1/(8σ²))``, so nearly always for the σ of distributed DP. Below σ = 1, where
  that rate falls away, it uses Canonne, Kamath and Steinke's discrete-Laplace rejection
  sampler (NeurIPS 2020, Algorithms 2-3; exact too, but about 70 % acceptance and two
  exponentials a proposal: 1.5-2x slower at large σ). Both are vectorised, with rejected
  slots redrawn until every slot holds an accepted draw. The sum of ``n`` discrete
  Gaussians is *close to*, not exactly, a discrete Gaussian; ``dp.accounting`` uses
  Kairouz et al.'s bound for the gap.
- **Skellam** ``Sk(μ)``: the difference of two independent ``Poisson(μ/2)``, variance
  ``μ``. The family is closed under sums, so ``n`` clients adding ``Sk(μ/n)`` give exactly
  ``Sk(μ)`` (Agarwal, Kairouz and Liu 2021): simpler to sample and to account.

Both samplers take a ``numpy.random.Generator``; the caller seeds it from the OS
(``hfl.secure`` uses ``Generator(PCG64DXSM())``), never from anything another party knows.
"""

from __future__ import annotations

import math

import numpy as np


def _nothing_to_draw(name: str, scale: float, size: int) -> bool:
    """Whether every draw is 0 (``scale`` or ``size`` is 0); ValueError if ``scale`` is
    negative, infinite or NaN."""
    if not (scale >= 0 and math.isfinite(scale)):
        raise ValueError(f"{name} must be finite and >= 0, got {scale}")
    return scale == 0 or size == 0


def discrete_gaussian(
    sigma: float, size: int, rng: np.random.Generator, dtype: type = np.int64
) -> np.ndarray:
    """``size`` independent draws of ``N_Z(0, sigma²)`` (int64, or exact floats)."""
    if _nothing_to_draw("sigma", sigma, size):
        return np.zeros(size, dtype=dtype)
    draw = _dg_candidates if sigma >= 1.0 else _cks_candidates
    out, ok = draw(size, sigma, rng)
    todo = np.flatnonzero(~ok)
    while todo.size:  # i.i.d. retries per rejected slot until each holds an accepted draw
        y, ok = draw(todo.size, sigma, rng)
        out[todo[ok]] = y[ok]
        todo = todo[~ok]
    return out if dtype is np.float64 else out.astype(dtype)


_LN2 = math.log(2.0)


def _dg_candidates(m: int, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rounded-Gaussian proposals (integer floats) and which of them are accepted.

    Draw ``X ~ N(0, σ²)``, let ``Y = rint(X)`` and ``U = X − Y ∈ [−½, ½]``, and accept
    with probability ``A = c·exp(U²/(2σ²)) / cosh(YU/σ²)``, ``c = exp(−1/(8σ²))``.
    Then ``A <= 1`` (``U² <= ¼``, ``cosh >= 1``) and, for every integer ``y``,

        P(Y=y, accepted) = ∫ φ_σ(y+u)·A du = c·φ_σ(y)·∫_{−½}^{½} 2/(exp(2yu/σ²)+1) du
                         = c·φ_σ(y),

    because ``2/(e^{2b}+1) + 2/(e^{−2b}+1) = 2`` makes the integral over the symmetric
    interval exactly 1. So an accepted ``Y`` is exactly ``N_Z(0, σ²)``, and the
    acceptance rate is ``c·Σ_y φ_σ(y) ≈ exp(−1/(8σ²))``.

    The test is ``E >= −log A = (1/8 − U²/2)/σ² + log cosh(YU/σ²)`` with ``E ~ Exp(1)``.
    Since ``0 <= log cosh(w) <= w²/2`` and ``|w| <= max|Y|/(2σ²)``, every ``E`` at or
    above ``1/(8σ²) + (max|Y|/(2σ²))²/2`` accepts; only the few below it (about
    ``(1 + (max|Y|/σ)²)/(8σ²)``: 5e-6 of them at σ = 1000) are decided by the exact
    expression. Used for ``σ >= 1`` (acceptance >= 0.88); below that ``c`` vanishes
    (``exp(−12.5)`` at σ = 0.1) and :func:`_cks_candidates` takes over.

    When that share ``p = P(E < sure) = 1 − exp(−sure)`` is small, the ``m`` exponentials
    are not drawn at all: which slots have ``E < sure`` is a Bernoulli(``p``) subset, drawn
    as its size ``k ~ Binomial(m, p)`` and a uniform ``k``-subset, and their ``E`` given
    ``E < sure`` by the inverse CDF ``−log(1 − U·p)``. The other slots accept whatever their
    ``E``, so the accept decisions have exactly the law of the dense test (``E`` is
    independent of ``X``), at the cost of a few draws instead of ``m``.
    """
    inv = 1.0 / (sigma * sigma)
    x = rng.standard_normal(m)
    x *= sigma
    y = np.rint(x)
    ymax = max(float(y.max()), -float(y.min()))
    sure = 0.125 * inv + 0.5 * (0.5 * ymax * inv) ** 2
    p = -math.expm1(-sure)
    if p < SPARSE_BELOW:
        ok = np.ones(m, dtype=bool)
        k = int(rng.binomial(m, p))
        idx = np.sort(rng.choice(m, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
        e = -np.log1p(-rng.random(k) * p)  # E | E < sure
    else:
        e_all = rng.standard_exponential(m)
        ok = e_all >= sure
        idx = np.flatnonzero(~ok)
        e = e_all[idx]
    if idx.size:
        yi = y[idx]
        u = x[idx] - yi
        w = yi * u * inv
        ok[idx] = e >= (0.125 - 0.5 * u * u) * inv + (np.logaddexp(w, -w) - _LN2)
    return y, ok


#: :func:`_dg_candidates` draws only the exponentials that can reject below this share
SPARSE_BELOW = 0.01


def _cks_candidates(m: int, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Canonne-Kamath-Steinke proposals for small σ: a discrete Laplace and its acceptance.

    The proposal has scale ``t = ⌊σ⌋ + 1``: ``G = ⌊t·E⌋`` (``P(G >= k) = exp(-k/t)``:
    geometric) with a random sign, ``+G`` or ``-(G+1)``. The negative branch has
    ``P(-k) = ½(1-p)p^(k-1)`` for ``p = exp(-1/t)``; accepting it with one extra factor
    ``p`` makes the proposal ``∝ p^|y|`` on all of ℤ, zero included once. CKS accept with
    ``exp(-(|y| - σ²/t)²/(2σ²))``: an ``Exp(1)`` draw exceeding the exponent.
    """
    t = math.floor(sigma) + 1
    s2 = sigma * sigma
    y = rng.standard_exponential(m)
    y *= t
    np.floor(y, out=y)
    neg = np.unpackbits(np.frombuffer(rng.bytes((m + 7) // 8), np.uint8), count=m)
    y += neg  # |Y| = G + 1 on the negative branch
    a = y - s2 / t
    a *= a
    a *= 1.0 / (2.0 * s2)
    a += neg * (1.0 / t)  # the negative branch's extra factor p = exp(-1/t)
    ok = rng.standard_exponential(m) >= a
    y[neg.view(bool)] *= -1.0
    return y, ok


def skellam(
    mu: float, size: int, rng: np.random.Generator, dtype: type = np.int64
) -> np.ndarray:
    """``size`` independent draws of ``Sk(mu)`` (variance ``mu``; int64, or exact floats)."""
    if _nothing_to_draw("mu", mu, size):
        return np.zeros(size, dtype=dtype)
    out: np.ndarray = rng.poisson(mu / 2.0, size).astype(dtype)
    out -= rng.poisson(mu / 2.0, size)
    return out


def sample(
    kind: str, variance: float, size: int, rng: np.random.Generator, dtype: type = np.int64
) -> np.ndarray:
    """Integer noise of the given kind ('gaussian' or 'skellam') and variance."""
    if kind == "gaussian":
        return discrete_gaussian(math.sqrt(variance), size, rng, dtype)
    if kind == "skellam":
        return skellam(variance, size, rng, dtype)
    raise ValueError(f"noise kind must be 'gaussian' or 'skellam', got {kind!r}")
