"""Distributed DP: the clients' noise adds up inside the secure sum (Kairouz et al. 2021).

Each client, on its own update ``x`` (a float vector of dimension ``d``):

1. clips it to L2 norm ``C``;
2. rotates it, ``y = HD_s x`` (``dp.rotation``: a Walsh–Hadamard transform per block of
   ``B`` coordinates, each block with its own random signs; ``s`` is the round's public
   seed), and scales by ``1/γ``;
3. rounds each coordinate stochastically, and redraws the rounding until the rounded
   vector's norm is at most ``Δ₂`` (*conditional* rounding: at most ``1/(1-β)`` draws
   expected), so the sensitivity is a hard bound, not a high-probability one;
4. adds integer noise (discrete Gaussian or Skellam) of variance ``σ²_c``, so that the
   sum over the ``n`` sampled clients carries the target ``(z·Δ₂)²``;
5. reduces mod ``m = 2**bits`` and hands the integers to SecAgg+.

The server unmasks only the sum mod ``m``, lifts it to signed integers, multiplies by
``γ`` and inverts the rotation. It never holds an un-noised sum: each masked input
already carries its client's noise, and the masks cancel only in the noised total.

What each party learns: a client learns nothing of the others (SecAgg+). The server
learns the noised sum of the surviving clients' clipped updates, which is
``(ε, δ)``-DP with respect to any one client's whole update for the ε that
:meth:`DistributedDP.epsilon` reports. The noise of a dropped client is missing from the
sum; :meth:`DistributedDP.epsilon` accounts for the fewest survivors the SecAgg
threshold allows (``threshold``), the worst case. A client that adds less noise than
asked only weakens the guarantee by its share, as in every distributed-DP scheme;
honest-but-curious clients are assumed for the noise.

Configuration is checked up front (:meth:`DistributedDP.check`): with the union bound
over all ``D`` coordinates, the sum of the ``n`` rotated, rounded, noised vectors stays
inside ``(-m/2, m/2)`` except with probability ``overflow_prob``; otherwise a
``ConfigError`` names the figures and what to raise. ``γ`` defaults to the finest
granularity that passes the check. The rotation's flattening is bounded per block, for
the worst case of the whole sum's norm inside one block of ``B`` coordinates, so a
smaller block only makes the bound (and ``γ``) more conservative, never unsound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dp import accounting, noise
from dp.rotation import block_size, padded_len, rotate, unrotate
from party.errors import ConfigError

KINDS = ("gaussian", "skellam")


@dataclass(frozen=True)
class DistributedDP:
    """One round's distributed-DP parameters; frozen, checked on construction.

    Args:
        dim: the update's dimension ``d``.
        clip: the L2 clipping norm ``C`` in the update's own units.
        noise_multiplier: ``z``; the sum's noise std is ``z·Δ₂`` (``≈ z·C/γ``), as in
            central DP with the same multiplier.
        clients: the number of clients sampled per round ``n``; the noise is split
            among them.
        threshold: the fewest clients a round may finish with (SecAgg's threshold);
            ε is reported for this many survivors.
        bits: the modulus ``m = 2**bits`` (at most 32: SecAgg carries uint32).
        kind: ``'gaussian'`` (discrete Gaussian) or ``'skellam'``.
        beta: conditional-rounding slack (Kairouz et al. use ``exp(-0.5)``).
        overflow_prob: the chance that any coordinate of the sum wraps.
        granularity: ``γ``; ``None`` picks the finest one that fits the modulus.
        block: the rotation's block ``B`` (a power of two); ``None`` picks
            :func:`dp.rotation.block_size` of ``dim`` (at most 1 % padding when it can).
            The clients and the server must use the same one; both derive it from
            ``dim``.
    """

    dim: int
    clip: float
    noise_multiplier: float
    clients: int
    threshold: int | None = None
    bits: int = 16
    kind: str = "gaussian"
    beta: float = math.exp(-0.5)
    overflow_prob: float = 1e-9
    granularity: float | None = None
    block: int | None = None
    gamma: float = field(init=False)
    #: the rotation block in use (``block``, or the one picked for ``dim``)
    rotation_block: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("dim", "clients", "bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"DistributedDP.{name} must be a positive integer, got {v!r}")
        if self.threshold is None:
            object.__setattr__(self, "threshold", self.clients)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= self.clients:
            raise ConfigError(
                f"DistributedDP.threshold must be an integer in [1, clients={self.clients}], got {t!r}"
            )
        if not 2 <= self.bits <= 32:
            raise ConfigError(f"DistributedDP.bits must be in [2, 32], got {self.bits}")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ConfigError(f"DistributedDP.clip must be positive and finite, got {self.clip}")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ConfigError(
                f"DistributedDP.noise_multiplier must be >= 0 and finite, got {self.noise_multiplier}"
            )
        if self.kind not in KINDS:
            raise ConfigError(f"DistributedDP.kind must be one of {KINDS}, got {self.kind!r}")
        if not 0 < self.beta < 1 or not 0 < self.overflow_prob < 1:
            raise ConfigError("DistributedDP.beta and overflow_prob must be in (0, 1)")
        b = self.block
        if b is None:
            b = block_size(self.dim)
        elif isinstance(b, bool) or not isinstance(b, int) or b < 1 or b & (b - 1):
            raise ConfigError(f"DistributedDP.block must be a power of two >= 1, got {b!r}")
        object.__setattr__(self, "rotation_block", b)
        gamma = self.granularity if self.granularity is not None else self._finest_gamma()
        if not (gamma > 0 and math.isfinite(gamma)):
            raise ConfigError(f"DistributedDP.granularity must be positive, got {gamma}")
        object.__setattr__(self, "gamma", float(gamma))
        self.check()

    # -- derived figures (integer units) ---------------------------------------------
    @property
    def padded(self) -> int:
        """``D``: the rotated length (``dim`` rounded up to a multiple of the block)."""
        return padded_len(self.dim, self.rotation_block)

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    def l2_for(self, gamma: float) -> float:
        """``Δ₂`` after conditional rounding at granularity ``gamma`` (Kairouz et al. Thm. 2)."""
        c, dd = self.clip / gamma, float(self.padded)
        a = (c + math.sqrt(dd)) ** 2
        b = c * c + dd / 4 + math.sqrt(2 * math.log(1 / self.beta)) * (c + math.sqrt(dd) / 2)
        return math.sqrt(min(a, b))

    @property
    def l2(self) -> float:
        return self.l2_for(self.gamma)

    @property
    def l1(self) -> float:
        """``Δ₁`` of an integer vector of L2 norm ``Δ₂`` in ``D`` dimensions."""
        return min(self.l2**2, math.sqrt(self.padded) * self.l2)

    def client_variance_for(self, gamma: float) -> float:
        """One client's noise variance: the sum over ``clients`` has ``(z·Δ₂)²``."""
        return (self.noise_multiplier * self.l2_for(gamma)) ** 2 / self.clients

    @property
    def client_variance(self) -> float:
        return self.client_variance_for(self.gamma)

    def sum_bound(self, gamma: float) -> float:
        """A bound on ``|sum|`` per coordinate that fails with prob. ``<= overflow_prob``."""
        n, dd, bb = self.clients, float(self.padded), float(self.rotation_block)
        # union bound over all D coordinates; half the budget to signal, half to noise
        lg = math.log(4 * dd / self.overflow_prob)
        # each rotated coordinate of the sum (norm <= n·C/γ) is a Rademacher sum over its
        # block of B: Hoeffding with the block's norm, at worst the whole norm in one block
        signal = n * (self.clip / gamma) * math.sqrt(2 * lg / bb)
        rounding = float(n)  # each client's rounding moves a coordinate by < 1
        var = self.client_variance_for(gamma) * n
        if self.kind == "gaussian":  # discrete Gaussians are sigma-subgaussian (CKS20)
            tail = math.sqrt(2 * var * lg)
        else:  # Bernstein for a Skellam (difference of Poissons): t²/(2(var + t/3))
            tail = lg / 3 + math.sqrt((lg / 3) ** 2 + 2 * var * lg)
        return signal + rounding + tail

    def check(self) -> None:
        """ConfigError unless the noised sum fits the modulus with the stated probability."""
        bound = self.sum_bound(self.gamma)
        half = self.modulus // 2
        if bound >= half:
            raise ConfigError(
                f"distributed DP overflow: the sum of {self.clients} clients' noised vectors can "
                f"reach {bound:.0f} per coordinate (P(wrap) <= {self.overflow_prob:g}), beyond "
                f"the modulus 2**{self.bits}'s signed range ±{half}; raise bits, raise the "
                f"granularity (now {self.gamma:g}), or lower noise_multiplier/clients"
            )

    def _finest_gamma(self) -> float:
        half = (1 << self.bits) // 2
        hi = self.clip  # start coarse: one unit per clip norm
        while self.sum_bound(hi) >= half:
            hi *= 2
            if hi > self.clip * 2**40:
                raise ConfigError(
                    f"distributed DP overflow: no granularity fits {self.clients} clients "
                    f"in 2**{self.bits} with noise_multiplier {self.noise_multiplier}; raise bits"
                )
        lo = hi / 2
        while self.sum_bound(lo) < half and lo > self.clip * 2**-60:
            hi, lo = lo, lo / 2
        for _ in range(50):  # bisection: sum_bound falls as gamma grows
            mid = math.sqrt(lo * hi)
            if self.sum_bound(mid) >= half:
                lo = mid
            else:
                hi = mid
        return hi * 1.001

    # -- the two halves of a round ----------------------------------------------------
    def encode(self, update: np.ndarray, seed: int, rng: np.random.Generator) -> np.ndarray:
        """A client's update → its noised integer vector mod ``2**bits`` (uint32, length D)."""
        return np.mod(self.encode_centred(update, seed, rng), self.modulus).astype(np.uint32)

    def encode_centred(
        self, update: np.ndarray, seed: int, rng: np.random.Generator
    ) -> np.ndarray:
        """:meth:`encode`'s integers as float64 in ``[-2**(bits-1), 2**(bits-1))``."""
        x = np.asarray(update, dtype=np.float64).ravel()
        if x.shape[0] != self.dim:
            raise ValueError(f"update has {x.shape[0]} values, DistributedDP.dim is {self.dim}")
        if not np.isfinite(x).all():
            raise ValueError("update contains NaN or Inf")
        norm = float(np.linalg.norm(x))
        scale = (min(1.0, self.clip / norm) if norm > 0 else 1.0) / self.gamma
        y = rotate(x, seed, self.rotation_block)
        y *= scale
        bound2 = self.l2**2
        r = np.empty_like(y)
        for _ in range(1000):
            rng.random(out=r)
            r += y
            np.floor(r, out=r)
            if float(r @ r) <= bound2:
                break
        else:  # pragma: no cover - probability beta**1000
            raise RuntimeError("conditional rounding did not meet its norm bound")
        # integers as floats: exact below 2**53
        r += noise.sample(self.kind, self.client_variance, r.shape[0], rng, np.float64)
        return _centre(r, self.modulus)

    def lift(self, total: np.ndarray) -> np.ndarray:
        """The centred lift of a sum mod ``2**bits``: ``[0, m)`` → ``[-m/2, m/2)``."""
        v = np.mod(np.asarray(total, dtype=np.int64), self.modulus)
        half = self.modulus // 2
        return np.where(v >= half, v - self.modulus, v)

    def decode(self, total: np.ndarray, seed: int) -> np.ndarray:
        """The unmasked sum mod ``2**bits`` → the noised sum of clipped updates (length d).

        ``total`` is integers: an integer array, or floats holding integers (SecAgg's sum
        of centred values; rounded to the nearest integer first, exact below ``2**53``).
        """
        t = np.asarray(total)
        if t.shape != (self.padded,):
            raise ValueError(f"sum has shape {t.shape}, want ({self.padded},)")
        if t.dtype.kind == "f":
            v = _centre(np.rint(t), self.modulus)
        else:
            v = self.lift(t).astype(np.float64)
        v *= self.gamma
        return unrotate(v, seed, self.dim, self.rotation_block)

    # -- accounting -------------------------------------------------------------------
    @property
    def sum_noise_std(self) -> float:
        """The sum's noise std per coordinate in the update's units (all clients present)."""
        return math.sqrt(self.client_variance * self.clients) * self.gamma

    def epsilon(self, rounds: int, delta: float, *, survivors: int | None = None) -> float:
        """ε after ``rounds`` rounds with ``survivors`` (default: the threshold) in each sum."""
        s = self.threshold if survivors is None else survivors
        assert s is not None
        return accounting.distributed_epsilon(
            self.kind, self.client_variance, s, self.l2, self.l1, rounds, delta
        )


def _centre(r: np.ndarray, modulus: int) -> np.ndarray:
    """``r``'s centred residues mod ``modulus`` in place, in ``[-m/2, m/2)`` (integer floats).

    ``r - m·floor((r + m/2)/m)``: every step is exact for integers below ``2**53`` and a
    power-of-two ``m``, so this equals :meth:`DistributedDP.lift` without int64 passes.
    """
    m = float(modulus)
    t = r + m / 2
    t *= 1.0 / m
    np.floor(t, out=t)
    t *= m
    r -= t
    return r
