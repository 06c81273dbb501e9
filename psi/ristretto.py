"""ristretto255 on packed 32-byte points: RFC 9380 hash to group and masking (pure functions).

Points travel as one ``bytes`` blob of ``32 * n`` bytes, never as per-item
Python objects. libsodium (the copy bundled by ``rbcl``) does the group
arithmetic; we call it through ctypes directly, one call per point, with no
per-call allocation.

* :func:`hash_to_group` is ``hash_to_ristretto255`` of RFC 9380 (suite
  ``ristretto255_XMD:SHA-512_R255MAP_RO_``): ``expand_message_xmd`` with
  SHA-512 to 64 uniform bytes, then the RFC 9496 one-way map (libsodium's
  ``crypto_core_ristretto255_from_hash``). It is *not* ``g^H(x)``, whose
  discrete logs would be known (threats.md row 19).
* :func:`mask` raises every point to a secret scalar. libsodium decodes each
  point (``ristretto255_frombytes``, which refuses every non-canonical
  encoding) *before* the multiplication and refuses an identity result; we also
  refuse the identity encoding up front. Any refusal raises
  :class:`InvalidPoint` with the point's index (threats.md row 18). ristretto255
  has prime order, so there are no low-order points to reject beyond these.

This module imports nothing else of tessera: the group worker processes
(:mod:`psi._worker`) load it alone. :mod:`psi.group` re-exports it and adds the
batched :class:`psi.group.GroupEngine`.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence

import rbcl
from rbcl import rbcl as _rbcl_impl

POINT_BYTES = 32
SCALAR_BYTES = 32
IDENTITY = bytes(POINT_BYTES)
#: RFC 9380 suite ID our DSTs are built on.
SUITE = b"ristretto255_XMD:SHA-512_R255MAP_RO_"

_lib = _rbcl_impl._sodium  # the ctypes CDLL rbcl loaded (libsodium)
_scalarmult = _lib.crypto_scalarmult_ristretto255
_from_hash = _lib.crypto_core_ristretto255_from_hash
_is_valid = _lib.crypto_core_ristretto255_is_valid_point


class InvalidPoint(ValueError):
    """A received value is not a canonical, non-identity ristretto255 encoding."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"point {index}: {reason}")
        self.index = index
        self.reason = reason


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 ``expand_message_xmd`` with SHA-512."""
    if len(dst) > 255:
        raise ValueError("DST longer than 255 bytes")
    ell = -(-len_in_bytes // 64)
    if ell > 255 or len_in_bytes > 65535:
        raise ValueError(f"len_in_bytes {len_in_bytes} too large")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(
        bytes(128) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    out = b = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    for i in range(2, ell + 1):
        b = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, b, strict=True)) + bytes([i]) + dst_prime).digest()
        out += b
    return out[:len_in_bytes]


def from_uniform(h: bytes) -> bytes:
    """RFC 9496 §4.3.4 element derivation from 64 uniform bytes."""
    if len(h) != 64:
        raise ValueError("need 64 bytes")
    return bytes(rbcl.crypto_core_ristretto255_from_hash(h))


def hash_to_group(msgs: Sequence[bytes], dst: bytes) -> bytes:
    """``hash_to_ristretto255(msg, dst)`` for each message, packed.

    Equivalent to ``from_uniform(expand_message_xmd(msg, dst, 64))``; the fixed
    prefix of the first hash is absorbed once per batch.
    """
    if len(dst) > 255:
        raise ValueError("DST longer than 255 bytes")
    dst_prime = dst + bytes([len(dst)])
    tail0 = b"\x00\x40\x00" + dst_prime  # I2OSP(64, 2) || I2OSP(0, 1) || DST'
    tail1 = b"\x01" + dst_prime
    pre = hashlib.sha512(bytes(128))
    sha512 = hashlib.sha512
    n = len(msgs)
    out = ctypes.create_string_buffer(POINT_BYTES * n) if n else None
    for i, m in enumerate(msgs):
        h = pre.copy()
        h.update(m)
        h.update(tail0)
        u = sha512(h.digest() + tail1).digest()
        _from_hash(ctypes.byref(out, POINT_BYTES * i), u)  # type: ignore[arg-type]
    blob = out.raw if out is not None else b""
    # from_hash gives the identity only for a 2^-250-probability input; refuse it anyway.
    if n and IDENTITY in _points(blob):
        raise ValueError("hash to group gave the identity element")
    return blob


def _points(blob: bytes) -> set[bytes]:
    return {blob[i : i + POINT_BYTES] for i in range(0, len(blob), POINT_BYTES)}


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar mod the group order."""
    while True:
        s = bytes(rbcl.crypto_core_ristretto255_scalar_random())
        if s != bytes(SCALAR_BYTES):
            return s


def invert_scalar(s: bytes) -> bytes:
    """``1/s`` mod the group order (``s`` non-zero): masking with it undoes a mask with ``s``."""
    if len(s) != SCALAR_BYTES or s == bytes(SCALAR_BYTES):
        raise ValueError("scalar must be 32 bytes and not zero")
    return bytes(rbcl.crypto_core_ristretto255_scalar_invert(s))


def mask(points: bytes, scalar: bytes, *, start_index: int = 0) -> bytes:
    """Each point raised to ``scalar``; :class:`InvalidPoint` on a bad or identity point."""
    if len(points) % POINT_BYTES:
        raise InvalidPoint(start_index + len(points) // POINT_BYTES, "truncated point")
    if len(scalar) != SCALAR_BYTES:
        raise ValueError("scalar must be 32 bytes")
    n = len(points) // POINT_BYTES
    if n == 0:
        return b""
    out = ctypes.create_string_buffer(POINT_BYTES * n)
    mv = memoryview(points)
    for i in range(n):
        p = bytes(mv[POINT_BYTES * i : POINT_BYTES * (i + 1)])
        if p == IDENTITY:
            raise InvalidPoint(start_index + i, "identity element")
        if _scalarmult(ctypes.byref(out, POINT_BYTES * i), scalar, p) != 0:
            reason = "not a canonical ristretto255 encoding" if not _is_valid(p) else "identity result"
            raise InvalidPoint(start_index + i, reason)
    return out.raw


def is_valid_point(p: bytes) -> bool:
    """Canonical encoding of a non-identity element."""
    return len(p) == POINT_BYTES and p != IDENTITY and bool(_is_valid(p))


__all__ = [
    "IDENTITY",
    "POINT_BYTES",
    "SCALAR_BYTES",
    "SUITE",
    "InvalidPoint",
    "expand_message_xmd",
    "from_uniform",
    "hash_to_group",
    "invert_scalar",
    "is_valid_point",
    "mask",
    "random_scalar",
]
