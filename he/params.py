"""CKKS parameters checked against the HE standard, and the errors of the ``he`` package.

:class:`CkksParams` refuses, at construction, any ring degree / coefficient modulus
pair above the HE standard's 128-bit limit (homomorphicencryption.org), a scale that
one rescale would not restore, and bounds (masks, rounding, flooding, decryption
budget) that would let a decryption leave the range CKKS decrypts correctly
(threats.md rows 24-29). Both CKKS protocols (``vfl.he`` split layer, ``ftl``) use
these parameters; nothing here touches a key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from party.errors import ConfigError, RemoteProtocolError, TesseraError

#: HE standard (homomorphicencryption.org), 128-bit classical security, ternary
#: secret: the largest total coefficient modulus (bits) per ring degree N.
#: Same table as SEAL's ``SEAL_HE_STD_PARMS_128_TC`` (util/hestdparms.h).
HE_STD_128_MAX_LOGQ: dict[int, int] = {
    1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881,
}


class HeError(TesseraError):
    """A homomorphic-encryption step failed (base of the he errors)."""


class DecryptionRangeError(HeError, RemoteProtocolError):
    """A decryption gave values outside the range our masks allow: wrong key or tampering."""


class KeyMismatch(HeError, RemoteProtocolError):
    """A ciphertext names a key we do not hold (stale or foreign key)."""


class DecryptionLimit(HeError):
    """This key reached its decryption budget and must be rotated before more use."""


@dataclass(frozen=True)
class CkksParams:
    """CKKS parameters of a ciphertext × plaintext protocol (see shared/design/vfl_he.md).

    Attributes:
        poly_modulus_degree: ring degree N; N/2 slots per ciphertext.
        coeff_mod_bit_sizes: (data prime, multiplication prime, special prime).
            Exactly one multiplicative level is used.
        scale_bits: log2 of the encoding scale of fresh ciphertexts and plaintexts.
        value_bound: |h| (passive bottom output) is clipped to this.
        mask_bound: slot masks are uniform in ±mask_bound.
        share_bound: the active party's share W_A of the interactive weights is
            re-drawn uniform in ±share_bound every step, hiding W from the passive.
        round_bits: decryptions returned to a peer are rounded to 2**-round_bits.
        flood_sigma: Gaussian noise added before rounding (noise flooding).
        max_decryptions: decryptions per key before the key must be rotated.
        range_limit: a decrypted |value| above this raises DecryptionRangeError.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 60)
    scale_bits: int = 40
    value_bound: float = 8.0
    mask_bound: float = 2.0**14
    share_bound: float = 256.0
    round_bits: int = 24
    flood_sigma: float = 2.0**-26
    max_decryptions: int = 1 << 16
    range_limit: float = 2.0**18

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        bits = tuple(int(b) for b in self.coeff_mod_bit_sizes)
        object.__setattr__(self, "coeff_mod_bit_sizes", bits)
        if n not in HE_STD_128_MAX_LOGQ:
            raise ConfigError(
                f"poly_modulus_degree must be one of {sorted(HE_STD_128_MAX_LOGQ)}, got {n}"
            )
        if len(bits) != 3:
            raise ConfigError(
                "coeff_mod_bit_sizes must be (data, multiplication, special) primes: "
                f"the interactive layer uses exactly one level, got {list(bits)}"
            )
        total = sum(bits)
        if total > HE_STD_128_MAX_LOGQ[n]:
            raise ConfigError(
                f"insecure CKKS parameters: N={n} with a {total}-bit coefficient modulus "
                f"{list(bits)} exceeds the HE standard's 128-bit limit of "
                f"{HE_STD_128_MAX_LOGQ[n]} bits"
            )
        if any(b < 20 or b > 60 for b in bits):
            raise ConfigError(f"each prime must have 20..60 bits, got {list(bits)}")
        if bits[1] != self.scale_bits:
            raise ConfigError(
                f"the multiplication prime ({bits[1]} bits) must equal scale_bits "
                f"({self.scale_bits}) so that one rescale restores the scale"
            )
        headroom = bits[0] - self.scale_bits - 1
        if headroom < 1 or 2.0**headroom < self.range_limit:
            raise ConfigError(
                f"data prime {bits[0]} bits leaves values < 2**{headroom} after rescale; "
                f"range_limit {self.range_limit:g} needs more (depth exhausted: "
                "lower range_limit/mask_bound or use a larger data prime)"
            )
        for name in ("value_bound", "mask_bound", "share_bound", "range_limit", "flood_sigma"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be finite and >= 0, got {v}")
        if self.mask_bound * 8 > self.range_limit:
            raise ConfigError(
                f"mask_bound {self.mask_bound:g} too large for range_limit {self.range_limit:g}"
            )
        if not 8 <= self.round_bits <= 40:
            raise ConfigError(f"round_bits must be in 8..40, got {self.round_bits}")
        if self.max_decryptions < 1:
            raise ConfigError("max_decryptions must be >= 1")

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    def max_ciphertext_bytes(self) -> int:
        """Upper bound on one serialized ciphertext (2 polys, all data primes, + header)."""
        return 2 * (len(self.coeff_mod_bit_sizes) - 1) * self.poly_modulus_degree * 8 + 4096

    def max_context_bytes(self) -> int:
        """Upper bound on a serialized public context (parameters + public key)."""
        return 4 * len(self.coeff_mod_bit_sizes) * self.poly_modulus_degree * 8 + (1 << 16)



__all__ = [
    "HE_STD_128_MAX_LOGQ",
    "CkksParams",
    "DecryptionLimit",
    "DecryptionRangeError",
    "HeError",
    "KeyMismatch",
]
