"""Mask PRG: AES-256-CTR keystream from full 32-byte keys derived by HKDF-SHA256.

Every mask is the keystream of AES-256 in CTR mode (initial counter block all
zero) under a key that HKDF-SHA256 derives from a full 32-byte seed and a
context naming the purpose, session, round and parties, so masks for different
rounds, pairs and purposes are independent (threats.md row 10). No seed is ever
folded to 32 bits (contrast: Flower's ``pseudo_rand_gen``, FATE 1.x).

The keystream is read as little-endian ``uint32``/``uint64`` words by
``np.frombuffer`` (no Python loop); masks are added with numpy's natural
wraparound modulo 2**bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DOMAIN = b"tessera-secagg/v1"
_ZERO_BLOCK = bytes(16)


def context(*fields: str | int | bytes) -> bytes:
    """Unambiguous encoding of context fields (each length-prefixed)."""
    out = bytearray()
    for f in fields:
        b = f if isinstance(f, bytes) else str(f).encode("utf-8")
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


def hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with no salt."""
    if len(secret) < 32:
        raise ValueError(f"HKDF input must carry >= 32 bytes of key material, got {len(secret)}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def self_mask_key(seed: bytes, *, session: str, round: int, client: str) -> bytes:
    """AES key of client ``client``'s self mask PRG(b_u)."""
    return hkdf(seed, DOMAIN + context("self-mask", session, round, client))


def pairwise_mask_key(shared: bytes, *, session: str, round: int, a: str, b: str) -> bytes:
    """AES key of the pairwise mask of clients ``a`` and ``b`` (order-insensitive)."""
    lo, hi = sorted((a, b))
    return hkdf(shared, DOMAIN + context("pairwise-mask", session, round, lo, hi))


def keystream(key: bytes, nbytes: int, *, nonce: bytes = _ZERO_BLOCK, out: bytearray | None = None) -> memoryview:
    """``nbytes`` of AES-256-CTR keystream (the encryption of zeros).

    ``out`` is an optional reusable buffer of at least ``nbytes + 15`` bytes.
    """
    if len(key) != 32:
        raise ValueError(f"AES-256 key must be 32 bytes, got {len(key)}")
    enc = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    buf = out if out is not None and len(out) >= nbytes + 15 else bytearray(nbytes + 15)
    n = enc.update_into(_zeros(nbytes), buf)
    return memoryview(buf)[:n]


_ZCACHE: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    z = _ZCACHE.get(n)
    if z is None:
        if len(_ZCACHE) > 8:
            _ZCACHE.clear()
        z = _ZCACHE[n] = bytes(n)
    return z


def expand(key: bytes, length: int, dtype: npt.DTypeLike = np.uint64) -> np.ndarray:
    """A fresh array of ``length`` words of mask from ``key``."""
    dt = np.dtype(dtype).newbyteorder("<")
    ks = keystream(key, length * dt.itemsize)
    return np.frombuffer(ks, dtype=dt, count=length).astype(np.dtype(dtype), copy=True)


#: words per block in :meth:`MaskAccumulator.apply` (512 KB of uint64: stays in L2 cache)
BLOCK_WORDS = 1 << 16


class MaskAccumulator:
    """Adds and subtracts many PRG expansions into one array, reusing one buffer."""

    def __init__(self, length: int, dtype: npt.DTypeLike = np.uint64) -> None:
        self.dtype = np.dtype(dtype)
        self.length = length
        #: the running total; may be replaced by an array of the same dtype and length
        self.total = np.zeros(length, dtype=self.dtype)
        self._nbytes = length * self.dtype.itemsize
        self._buf = bytearray(self._nbytes + 15)
        self._le = self.dtype.newbyteorder("<")

    def _mask(self, key: bytes) -> np.ndarray:
        keystream(key, self._nbytes, out=self._buf)
        return np.frombuffer(self._buf, dtype=self._le, count=self.length)

    def add(self, key: bytes) -> None:
        """total += PRG(key)."""
        np.add(self.total, self._mask(key), out=self.total)

    def sub(self, key: bytes) -> None:
        """total -= PRG(key)."""
        np.subtract(self.total, self._mask(key), out=self.total)

    def apply(self, plus: Sequence[bytes], minus: Sequence[bytes] = ()) -> None:
        """total += Σ PRG(k) for k in ``plus``, −= Σ PRG(k) for k in ``minus``.

        Works block by block: every key's keystream for one block is generated
        and added while the block of ``total`` is in cache, instead of streaming
        the whole vector through memory once per key (about 1.5x faster).
        """
        def stream(key: bytes) -> CipherContext:
            if len(key) != 32:
                raise ValueError(f"AES-256 key must be 32 bytes, got {len(key)}")
            return Cipher(algorithms.AES(key), modes.CTR(_ZERO_BLOCK)).encryptor()

        enc_p = [stream(k) for k in plus]
        enc_m = [stream(k) for k in minus]
        size = self.dtype.itemsize
        zeros = memoryview(_zeros(BLOCK_WORDS * size))
        buf = bytearray(BLOCK_WORDS * size + 15)
        for start in range(0, self.length, BLOCK_WORDS):
            n = min(BLOCK_WORDS, self.length - start)
            z = zeros[: n * size]
            blk = self.total[start : start + n]
            ks = np.frombuffer(buf, dtype=self._le, count=n)
            for e in enc_p:
                e.update_into(z, buf)
                np.add(blk, ks, out=blk)
            for e in enc_m:
                e.update_into(z, buf)
                np.subtract(blk, ks, out=blk)
