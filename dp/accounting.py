"""Privacy accounting: ε at a given δ, per round and in total, through Google's ``dp-accounting``.

Why this library: it is Google's maintained accountant (the one behind TensorFlow
Privacy and TFF), pure Python with small wheels (``pip install 'tessera[dp]'``), and it
has both the RDP accountant for the subsampled Gaussian and zCDP events. Opacus's
accountants would pull torch-version constraints into the core; Opacus stays an
example-only extra.

Three mechanisms, each with the neighbouring relation it is stated for (one *client*
added or removed: user-level DP, as in McMahan et al. 2018):

- **Central DP** (``central_epsilon``): the server clips each update to L2 norm ``C``
  and adds ``N(0, (z·C)²)`` to the sum. The server is trusted to sample clients
  secretly, so amplification by Poisson sampling at rate ``q`` applies
  (``PoissonSampledDpEvent``). Flower samples a fixed number of clients; the Poisson
  event is the usual approximation for that and is stated as such.
- **Distributed discrete Gaussian** (``ddgauss_rho``): each of ``n`` clients adds
  ``N_Z(0, σ²)``; the sum satisfies ``ρ``-zCDP with Kairouz, Liu and Steinke's bound
  (ICML 2021, arXiv 2102.06387, Theorem 1 for the sum of discrete Gaussians):
  ``ε_z = min( sqrt(Δ₂²/(nσ²) + τΔ₁/2), Δ₂/(sqrt(n)σ) + τ sqrt(Δ₁) )``,
  ``τ = 10 Σ_{k=1}^{n-1} exp(-2π²σ² k/(k+1))``, ``ρ = ε_z²/2``.
- **Distributed Skellam** (``skellam_rdp``): the sum is exactly ``Sk(μ)``; RDP from
  Agarwal, Kairouz and Liu (NeurIPS 2021, arXiv 2110.04995, Theorem 3.5):
  ``ε(α) = αΔ₂²/(2μ) + min( ((2α-1)Δ₂² + 6Δ₁)/(16μ²), 3Δ₁/(4μ) )``.

In distributed mode the server is *not* trusted, and it is the server that samples the
clients: no amplification by sampling is claimed there (it would need secret sampling).
Dropouts lower the noise in the sum; ``distributed_epsilon`` is evaluated for the fewest
clients the SecAgg threshold lets a round finish with, the worst case.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from party.errors import ConfigError

#: RDP orders used for composition (dp-accounting's defaults plus larger ones).
ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *range(11, 64),
    128.0,
    256.0,
    512.0,
    1024.0,
)


class _QuietOrders(logging.Filter):
    """dp-accounting logs a warning each time a small fractional RDP order fails to converge
    for a sampled Gaussian and is left out of the minimum; that is expected and harmless."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in record.getMessage()


def _dpa() -> Any:
    logging.getLogger("absl").addFilter(_QUIET)
    try:
        import dp_accounting
        from dp_accounting import rdp  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ConfigError(
            "differential-privacy accounting needs the 'dp' extra: "
            "pip install 'tessera[dp]' (Google's dp-accounting)"
        ) from e
    return dp_accounting


_QUIET = _QuietOrders()


def _check(delta: float, rounds: int) -> None:
    if not (0 < delta < 1):
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"rounds must be a non-negative integer, got {rounds!r}")


def central_epsilon(
    noise_multiplier: float, sampling_rate: float, rounds: int, delta: float
) -> float:
    """ε after ``rounds`` rounds of the sampled Gaussian with multiplier ``z`` (RDP)."""
    _check(delta, rounds)
    if noise_multiplier <= 0:
        return math.inf
    if not (0 < sampling_rate <= 1):
        raise ConfigError(f"sampling rate must be in (0, 1], got {sampling_rate}")
    if rounds == 0:
        return 0.0
    d = _dpa()
    acc = d.rdp.RdpAccountant(orders=list(ORDERS))
    ev = d.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        ev = d.PoissonSampledDpEvent(sampling_rate, ev)
    acc.compose(ev, rounds)
    return float(acc.get_epsilon(delta))


def central_noise_for(
    target_epsilon: float, delta: float, rounds: int, sampling_rate: float
) -> float:
    """The smallest noise multiplier whose ε after ``rounds`` is at most ``target_epsilon``."""
    _check(delta, rounds)
    if target_epsilon <= 0:
        raise ConfigError(f"target_epsilon must be > 0, got {target_epsilon}")
    return smallest_noise(
        lambda z: central_epsilon(z, sampling_rate, rounds, delta), target_epsilon
    )


def smallest_noise(epsilon_of: Callable[[float], float], target_epsilon: float) -> float:
    """The smallest noise multiplier ``z`` with ``epsilon_of(z) <= target_epsilon`` (bisection,
    relative tolerance 1e-4; ``epsilon_of`` must fall as ``z`` grows)."""
    lo, hi = 1e-3, 1.0
    while epsilon_of(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ConfigError(f"no noise multiplier reaches epsilon {target_epsilon}")
    for _ in range(60):
        mid = (lo + hi) / 2
        if epsilon_of(mid) > target_epsilon:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4 * hi:
            break
    return hi


def ddgauss_rho(sigma: float, n: int, l2: float, l1: float) -> float:
    """zCDP ρ of the sum of ``n`` discrete Gaussians ``N_Z(0, sigma²)`` (Kairouz et al.)."""
    if n < 1 or sigma <= 0:
        return math.inf
    tau = 10.0 * sum(
        math.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, n)
    )
    e1 = math.sqrt(l2**2 / (n * sigma**2) + 0.5 * tau * l1)
    e2 = l2 / (math.sqrt(n) * sigma) + tau * math.sqrt(l1)
    eps = min(e1, e2)
    return 0.5 * eps * eps


def skellam_rdp(mu: float, l2: float, l1: float, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """RDP ε(α) of the Skellam mechanism with total variance ``mu`` (Agarwal et al.)."""
    a = np.asarray(orders, dtype=np.float64)
    if mu <= 0:
        return np.full(a.shape, np.inf)
    extra = np.minimum(((2 * a - 1) * l2**2 + 6 * l1) / (16 * mu**2), 3 * l1 / (4 * mu))
    return a * l2**2 / (2 * mu) + extra


def distributed_epsilon(
    kind: str,
    client_variance: float,
    survivors: int,
    l2: float,
    l1: float,
    rounds: int,
    delta: float,
) -> float:
    """ε after ``rounds`` rounds when at least ``survivors`` clients' noise is in each sum.

    ``client_variance`` is one client's noise variance and ``l2``/``l1`` the sensitivity,
    both in the quantised integer units the noise is added in.
    """
    _check(delta, rounds)
    if rounds == 0:
        return 0.0
    if kind == "gaussian":
        rho = ddgauss_rho(math.sqrt(client_variance), survivors, l2, l1)
        if not math.isfinite(rho):
            return math.inf
        d = _dpa()
        acc = d.rdp.RdpAccountant(orders=list(ORDERS))
        acc.compose(d.ZCDpEvent(rho), rounds)
        return float(acc.get_epsilon(delta))
    if kind == "skellam":
        d = _dpa()
        curve = skellam_rdp(client_variance * survivors, l2, l1) * rounds
        eps, _ = d.rdp.rdp_privacy_accountant.compute_epsilon(list(ORDERS), list(curve), delta)
        return float(eps)
    raise ConfigError(f"noise kind must be 'gaussian' or 'skellam', got {kind!r}")


@dataclass
class Ledger:
    """ε spent so far, one entry per finished round (what ``History`` reports).

    ``epsilon_after(r)`` is the total after ``r`` rounds; ``per_round`` holds each
    round's increment, so the plot and the log show both.
    """

    delta: float
    epsilon_after: Any  # Callable[[int], float]
    per_round: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    def step(self) -> tuple[float, float]:
        """Account one more round; return (this round's ε increment, total ε)."""
        r = len(self.total) + 1
        tot = float(self.epsilon_after(r))
        inc = tot - (self.total[-1] if self.total else 0.0)
        self.total.append(tot)
        self.per_round.append(inc)
        return inc, tot


class CentralAccountant:
    """Round-by-round ε of central DP (the sampled Gaussian), for a strategy wrapper.

    Each :meth:`step` composes one round of the Gaussian mechanism with multiplier
    ``z`` and sampling rate ``q`` (rounds may differ). ``steps`` is plain data (a list of
    ``[z, q]``) so that a checkpoint can carry it and :meth:`restore` can replay it.
    """

    def __init__(self, delta: float) -> None:
        _check(delta, 0)
        self.delta = delta
        self.steps: list[list[float]] = []
        self._acc: Any = None
        self.total = 0.0

    def _fresh(self) -> Any:
        d = _dpa()
        return d.rdp.RdpAccountant(orders=list(ORDERS))

    def _event(self, z: float, q: float) -> Any:
        d = _dpa()
        ev = d.GaussianDpEvent(z)
        return d.PoissonSampledDpEvent(q, ev) if q < 1 else ev

    def step(self, noise_multiplier: float, sampling_rate: float) -> tuple[float, float]:
        """Account one round; return (this round's ε increment, total ε)."""
        if not 0 < sampling_rate <= 1:
            raise ConfigError(f"sampling rate must be in (0, 1], got {sampling_rate}")
        if self._acc is None:
            self._acc = self._fresh()
        before = self.total
        if noise_multiplier <= 0 or math.isinf(before):
            self.total = math.inf  # one round without noise: no finite epsilon ever after
        else:
            self._acc.compose(self._event(noise_multiplier, sampling_rate))
            self.total = float(self._acc.get_epsilon(self.delta))
        self.steps.append([float(noise_multiplier), float(sampling_rate)])
        inc = 0.0 if math.isinf(before) else self.total - before
        return inc, self.total

    def restore(self, steps: Sequence[Sequence[float]]) -> None:
        """Replay the steps of a checkpoint."""
        self.steps, self._acc, self.total = [], None, 0.0
        for z, q in steps:
            self.step(float(z), float(q))
