"""Shamir secret sharing of 32-byte secrets over the prime field GF(2**256 + 297).

2**256 + 297 is the smallest prime above 2**256, so every 32-byte string is a
field element and a reconstructed value >= 2**256 proves the shares were bad.
Shares are the polynomial's values at small nonzero x (the clients' indices),
packed as 33-byte big-endian integers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import lru_cache

PRIME = (1 << 256) + 297
SECRET_BYTES = 32
SHARE_BYTES = 33


class ShamirError(ValueError):
    """Shares that cannot be combined (too few, duplicate x, or out of range)."""


def split(secret: bytes, xs: Sequence[int], threshold: int) -> list[bytes]:
    """Share ``secret`` so that any ``threshold`` of the values at ``xs`` rebuild it.

    Args:
        secret: exactly 32 bytes.
        xs: distinct evaluation points in [1, PRIME).
        threshold: degree + 1 of the random polynomial, 1 <= threshold <= len(xs).

    Returns:
        One 33-byte share per x, in the order of ``xs``.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold {threshold} not in [1, {len(xs)}]")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError("evaluation points must be distinct and in [1, PRIME)")
    coeffs = [int.from_bytes(secret, "big")] + [
        secrets.randbelow(PRIME) for _ in range(threshold - 1)
    ]
    out = []
    for x in xs:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % PRIME
        out.append(acc.to_bytes(SHARE_BYTES, "big"))
    return out


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Coefficients λ_i with f(0) = Σ λ_i f(x_i) for any polynomial of degree < len(xs)."""
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ShamirError("share indices must be distinct and in [1, PRIME)")
    num = 1
    for x in xs:
        num = num * x % PRIME
    lams = []
    for i, xi in enumerate(xs):
        den = xi
        for j, xj in enumerate(xs):
            if j != i:
                den = den * (xj - xi) % PRIME
        # λ_i = Π_{j≠i} x_j / (x_j - x_i) = (Π_j x_j / x_i) / Π_{j≠i} (x_j - x_i)
        lams.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(lams)


def combine(points: Sequence[tuple[int, bytes]], threshold: int) -> bytes:
    """Rebuild the secret from at least ``threshold`` (x, share) pairs.

    Uses the first ``threshold`` points. Raises :class:`ShamirError` when there
    are too few, when an x repeats, or when the result is not a 32-byte value
    (which a wrong or tampered share almost surely causes).
    """
    if len(points) < threshold:
        raise ShamirError(f"need {threshold} shares, got {len(points)}")
    use = points[:threshold]
    xs = tuple(int(x) for x, _ in use)
    lams = lagrange_at_zero(xs)
    acc = 0
    for lam, (_, share) in zip(lams, use, strict=True):
        if len(share) != SHARE_BYTES:
            raise ShamirError(f"share of {len(share)} bytes, expected {SHARE_BYTES}")
        y = int.from_bytes(share, "big")
        if y >= PRIME:
            raise ShamirError("share value out of the field")
        acc += lam * y
    acc %= PRIME
    if acc >> (8 * SECRET_BYTES):
        raise ShamirError("shares are inconsistent: the combined value is not a 32-byte secret")
    return acc.to_bytes(SECRET_BYTES, "big")
