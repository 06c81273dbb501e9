"""SecAggParams: the configuration of one secure aggregation round, checked once.

Everything that could make a round insecure or silently wrong is refused here,
at configuration time, with a :class:`party.errors.ConfigError` that names the
field and the bound (threats.md rows 7, 11, 12):

* fewer than 3 clients (one peer could subtract its own input from the sum);
* a threshold ``t`` with ``t <= (h + c) / 2`` for ``h`` share holders per client
  and ``c`` tolerated corrupt holders: two disjoint ``t``-sets would then exist
  among one client's holders, and a semi-malicious server could ask one set for
  the self-mask and the other for the mask key (Bell et al. 2020; Google's
  ``graph_parameter_finder``);
* ``corrupt_fraction + 2 * dropout_fraction > 0.9`` (Google's semi-malicious
  feasibility rule), or a threshold that the expected survivors cannot meet;
* a fixed-point configuration where ``n * max_weight * 2**(quant_bits-1)`` does
  not fit in the signed range of the modulus: the sum would wrap. We refuse and
  say which knob to turn; we never wrap silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from party.errors import ConfigError

#: Supported moduli: the masked vector is a numpy uint32 / uint64 array and
#: arithmetic mod 2**bits is numpy's natural wraparound.
MODULUS_BITS = (32, 64)
MODES = ("secagg", "secagg+")


def default_degree(num_clients: int) -> int:
    """SecAgg+ default degree: ceil(3·log2 n), rounded up to even, at most n-1."""
    k = math.ceil(3 * math.log2(max(num_clients, 2)))
    k += k % 2
    return min(k, num_clients - 1)


def find_degree(
    num_clients: int,
    dropout_fraction: float,
    *,
    corrupt_fraction: float = 0.0,
    correctness_bits: int = 20,
) -> int:
    """Smallest even SecAgg+ degree whose failure bound is below 2**-correctness_bits.

    Uses the default threshold for each candidate degree and
    :meth:`SecAggParams.failure_bound` (a union bound over clients of the
    binomial tail of their holders dropping out), like Google's
    ``graph_parameter_finder`` with its correctness parameter 20. Returns
    ``num_clients - 1`` (the complete graph) when no smaller degree qualifies.
    """
    target = 2.0**-correctness_bits
    for k in range(2, num_clients - 1, 2):
        try:
            p = SecAggParams(
                num_clients=num_clients, vector_length=1, neighbours=k,
                dropout_fraction=dropout_fraction, corrupt_fraction=corrupt_fraction,
            )
        except ConfigError:
            continue
        if p.failure_bound() <= target:
            return k
    return num_clients - 1


@dataclass(frozen=True, slots=True)
class SecAggParams:
    """Parameters of one secure aggregation round (see shared/design/secure_agg.md).

    Args:
        num_clients: cohort size ``n`` the round is configured for (>= 3).
        vector_length: length ``d`` of each client's float vector.
        mode: ``"secagg"`` (every pair of clients masks: complete graph) or
            ``"secagg+"`` (a random ``k``-regular Harary graph from a seed the
            server draws per round).
        neighbours: SecAgg+ degree ``k`` (even); ``None`` gives
            :func:`default_degree`. A ``k >= n - 1`` is the complete graph.
        threshold: Shamir threshold ``t``; ``None`` gives the smallest secure
            value ``floor((h + c) / 2) + 1`` (``h`` holders, ``c`` corrupt).
        clip: inputs are clipped to ``[-clip, clip]``.
        quant_bits: ``2**quant_bits`` quantisation levels over ``[-clip, clip]``;
            one step is ``2 * clip / 2**quant_bits``.
        modulus_bits: 32 or 64; the masked vector lives in Z_{2**modulus_bits}.
        max_weight: largest per-client weight (weights are integers, e.g. a
            number of examples); bounds the sum for the overflow check.
        dropout_fraction: fraction of clients the round must tolerate losing.
        corrupt_fraction: fraction of a client's share holders that may collude
            with the server.
        timeout_s: per-stage deadline of the runner.
    """

    num_clients: int
    vector_length: int
    mode: str = "secagg+"
    neighbours: int | None = None
    threshold: int | None = None
    clip: float = 8.0
    quant_bits: int = 32
    modulus_bits: int = 64
    max_weight: int = 1 << 20
    dropout_fraction: float = 0.1
    corrupt_fraction: float = 0.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        n = self.num_clients
        if not isinstance(n, int) or isinstance(n, bool) or n < 3:
            raise ConfigError(
                f"SecAggParams.num_clients must be an int >= 3, got {n!r}: with fewer "
                "clients one of them could subtract its own input from the sum"
            )
        if not isinstance(self.vector_length, int) or self.vector_length < 1:
            raise ConfigError(f"SecAggParams.vector_length must be >= 1, got {self.vector_length!r}")
        if self.mode not in MODES:
            raise ConfigError(f"SecAggParams.mode must be one of {MODES}, got {self.mode!r}")
        if self.neighbours is not None:
            k = self.neighbours
            if self.mode != "secagg+":
                raise ConfigError("SecAggParams.neighbours is only meaningful with mode='secagg+'")
            if not isinstance(k, int) or k < 2 or (k % 2 and k < n - 1):
                raise ConfigError(
                    f"SecAggParams.neighbours must be an even int >= 2 (Harary graph: k/2 "
                    f"neighbours on each side of a ring) or >= n-1 (complete), got {k!r}"
                )
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"SecAggParams.clip must be a positive finite float, got {self.clip!r}")
        if self.modulus_bits not in MODULUS_BITS:
            raise ConfigError(
                f"SecAggParams.modulus_bits must be one of {MODULUS_BITS}, got {self.modulus_bits!r}"
            )
        if not isinstance(self.quant_bits, int) or not 2 <= self.quant_bits <= self.modulus_bits - 2:
            raise ConfigError(
                f"SecAggParams.quant_bits must be in [2, {self.modulus_bits - 2}], got {self.quant_bits!r}"
            )
        if not isinstance(self.max_weight, int) or self.max_weight < 1:
            raise ConfigError(f"SecAggParams.max_weight must be an int >= 1, got {self.max_weight!r}")
        for name in ("dropout_fraction", "corrupt_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"SecAggParams.{name} must be in [0, 1), got {v!r}")
        if self.corrupt_fraction + 2 * self.dropout_fraction > 0.9:
            raise ConfigError(
                f"infeasible: corrupt_fraction + 2*dropout_fraction = "
                f"{self.corrupt_fraction + 2 * self.dropout_fraction:.3g} > 0.9 "
                "(semi-malicious-server rule of Bell et al. / Google's graph_parameter_finder)"
            )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"SecAggParams.timeout_s must be > 0, got {self.timeout_s!r}")

        h = self.holders
        c = self.corrupt_holders
        t = self.t
        if not isinstance(t, int) or isinstance(t, bool) or t < 2 or t > h:
            raise ConfigError(
                f"SecAggParams.threshold must be an int in [2, {h}] ({h} share holders per "
                f"client), got {t!r}"
            )
        if 2 * t <= h + c:
            raise ConfigError(
                f"infeasible threshold t={t}: it must exceed (holders + corrupt)/2 = "
                f"({h} + {c})/2, or two disjoint t-sets of one client's {h} share holders "
                "would let a server obtain both its self-mask and its mask key"
            )
        expected_alive = (1.0 - self.dropout_fraction) * h
        if expected_alive < t:
            raise ConfigError(
                f"infeasible threshold t={t}: with dropout_fraction={self.dropout_fraction} only "
                f"{expected_alive:.1f} of a client's {h} share holders are expected to remain"
            )
        # Overflow: |sum_u w_u q_u| <= n * max_weight * 2**(quant_bits-1) must stay below
        # 2**(modulus_bits-1) so that the centred lift of the sum mod 2**bits is exact.
        bound = n * self.max_weight * (1 << (self.quant_bits - 1))
        if bound >= 1 << (self.modulus_bits - 1):
            largest = ((1 << (self.modulus_bits - 1)) - 1) // (self.max_weight << (self.quant_bits - 1))
            raise ConfigError(
                f"overflow: {n} clients x max_weight {self.max_weight} x 2**{self.quant_bits - 1} "
                f"levels >= 2**{self.modulus_bits - 1}; the sum would wrap mod 2**{self.modulus_bits}. "
                f"At most {largest} clients fit; lower quant_bits or max_weight, or use "
                "modulus_bits=64"
            )

    # ---- derived values -------------------------------------------------------------
    @property
    def degree(self) -> int:
        """Number of neighbours ``k`` of each client (``n - 1`` for the complete graph)."""
        if self.mode == "secagg":
            return self.num_clients - 1
        k = self.neighbours if self.neighbours is not None else default_degree(self.num_clients)
        return min(k, self.num_clients - 1)

    @property
    def complete(self) -> bool:
        """True when every pair of clients masks (SecAgg, or SecAgg+ with k >= n-1)."""
        return self.degree >= self.num_clients - 1

    @property
    def holders(self) -> int:
        """Share holders per client: its ``k`` neighbours and itself."""
        return self.degree + 1

    @property
    def corrupt_holders(self) -> int:
        """Corrupt holders ``c`` the threshold must tolerate."""
        return math.ceil(self.corrupt_fraction * self.holders)

    @property
    def t(self) -> int:
        """The Shamir threshold in force (explicit or default)."""
        if self.threshold is not None:
            return self.threshold
        return (self.holders + self.corrupt_holders) // 2 + 1

    @property
    def step(self) -> float:
        """One quantisation step: the worst-case error of the weighted mean per coordinate."""
        return float(self.clip) / (1 << (self.quant_bits - 1))

    def failure_bound(self, dropout_fraction: float | None = None) -> float:
        """Union bound on the chance that some client keeps fewer than ``t`` live holders.

        Each client drops independently with probability ``dropout_fraction``;
        a client fails when more than ``h - t`` of its ``h`` holders drop.
        """
        p = self.dropout_fraction if dropout_fraction is None else dropout_fraction
        h, t = self.holders, self.t
        tail = sum(math.comb(h, j) * p**j * (1 - p) ** (h - j) for j in range(h - t + 1, h + 1))
        return min(1.0, self.num_clients * tail)
