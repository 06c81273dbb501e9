"""The additively homomorphic layer of SecureBoost: SecretFlow's HEU (Okamoto–Uchiyama) or plaintext.

Why HEU's OU and not TenSEAL's CKKS (measured on this workload on the 2-core machine,
``python -m benchmarks.boost --compare-he``; figures in ``benchmarks/README.md``):

* The passive party's work is a *histogram*: for every node, feature and bin, the sum of the
  encrypted (g, h) of the rows in it. With one ciphertext per row that is one ciphertext
  addition per (row, feature) per level, which HEU does in C++ with
  ``batch_feature_wise_bucket_sum`` (SecretFlow's SGB kernel): 24,000 rows × 10 features in
  about 0.7-1.6 s per level, g and h packed into one OU plaintext.
* CKKS batches rows into slots, so a bin sum is a masked product plus a rotate-and-sum: one
  4,096-row chunk × 320 (feature, bin) columns took 104 s as ``CKKSVector.matmul`` and 76 ms
  per single bin as multiply+sum, i.e. minutes per level at 24,000 rows. Batching helps
  element-wise work, not reductions over a row subset.
* OU (and Paillier) are exact over the integers: g and h are fixed-point integers, so the
  encrypted sums decrypt to *exactly* the plaintext sums and the encrypted tree is identical
  to the plaintext one, split for split (tested). CKKS sums carry ~1e-6 noise that can flip
  near-tied gains.
* OU encrypts about 14× faster than HEU's Paillier (ZPaillier) here with half the
  ciphertext size (2048-bit keys); Paillier stays selectable (``scheme="paillier"``).
  Pure-Python ``phe`` is the slow reference only (``--compare-he``).

Packing: each row's pair becomes one plaintext ``g_q · 2^shift + h_q`` (h_q ≥ 0), where
g_q, h_q are the fixed-point integers; a sum of packed values unpacks to (Σg_q, Σh_q) as long
as Σh_q < 2^shift. This halves the ciphertext additions and the bytes.

Security: OU's semantic security (factoring of n = p²q, 2048-bit n by default) protects the
gradients from the passive party; the passive party can add ciphertexts but not decrypt.
HEU objects received from a peer are parsed by HEU's msgpack reader (never pickle); a
malformed blob is a :class:`RemoteProtocolError`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from party.errors import ConfigError, RemoteProtocolError

IntArray = npt.NDArray[np.int64]

SCHEMES = ("ou", "paillier", "plaintext")


def _heu() -> tuple[Any, Any]:
    try:
        from heu import numpy as hnp
        from heu import phe
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError(
            "vfl.boost needs SecretFlow's HEU for encrypted training: pip install 'tessera[boost]' "
            "(sf-heu); scheme='plaintext' runs without it"
        ) from e
    return hnp, phe


def quantize(g: npt.NDArray[np.float64], h: npt.NDArray[np.float64]) -> tuple[IntArray, IntArray, int]:
    """Fixed-point g and h with one power-of-two scale; returns (g_q, h_q, frac_bits).

    The scale keeps every sum of |values| below 2^52, so float64 sums of the integers are
    exact too (the active party's own histograms use ``np.bincount``), and at most 2^32.
    """
    n = max(len(g), 1)
    mx = float(max(np.abs(g).max(initial=0.0), np.abs(h).max(initial=0.0), 1e-12))
    frac = int(min(32, math.floor(52 - math.log2(mx * n + 1.0))))
    if frac < 8:
        raise ConfigError(f"gradients too large to encode exactly (max |g|,|h| = {mx:g}); scale the target")
    s = float(1 << frac)
    return np.rint(g * s).astype(np.int64), np.rint(h * s).astype(np.int64), frac


def pack_shift(h_q: IntArray) -> int:
    """Bits reserved for Σh_q in a packed plaintext."""
    return int(max(1, int(h_q.sum())).bit_length() + 2)


class Cipher(Protocol):
    """What the active party needs: encrypt packed rows, decrypt packed sums."""

    scheme: str

    def public_bytes(self) -> bytes: ...

    def encrypt(self, g_q: IntArray, h_q: IntArray, shift: int) -> bytes: ...

    def decrypt_sums(self, blob: bytes, shift: int) -> tuple[list[int], list[int]]: ...


class Summer(Protocol):
    """What a passive party needs: bucket sums and selected sums of ciphertexts."""

    sub_costly: bool

    def load(self, blob: bytes) -> Any: ...

    def bucket_sums(self, ct: Any, groups: list[npt.NDArray[np.int8]], bins: npt.NDArray[np.int8],
                    n_bins: int) -> list[Any]: ...

    def sub(self, a: Any, b: Any) -> Any: ...

    def select_sums(self, hist: Any, index_lists: list[list[int]]) -> bytes: ...

    def zero_hist(self, rows: int) -> Any: ...


# ---------------------------------------------------------------------------- HEU


class HeuCipher:
    """Active side: key pair (the secret key never leaves this object)."""

    def __init__(self, scheme: str = "ou", key_bits: int = 2048) -> None:
        hnp, phe = _heu()
        if scheme not in ("ou", "paillier"):
            raise ConfigError(f"HE scheme must be 'ou' or 'paillier', got {scheme!r}")
        if key_bits < 2048:
            raise ConfigError(f"key_bits must be >= 2048 for OU/Paillier, got {key_bits}")
        self.scheme = scheme
        st = phe.SchemaType.OU if scheme == "ou" else phe.SchemaType.ZPaillier
        self._kit = hnp.setup(st, key_bits)
        self._enc = self._kit.encryptor()
        self._dec = self._kit.decryptor()
        self._hnp, self._phe = hnp, phe

    def public_bytes(self) -> bytes:
        return bytes(self._kit.public_key().serialize())

    def encrypt(self, g_q: IntArray, h_q: IntArray, shift: int) -> bytes:
        packed = np.empty((len(g_q), 1), dtype=object)
        packed[:, 0] = [(int(a) << shift) + int(b) for a, b in zip(g_q.tolist(), h_q.tolist(), strict=True)]
        ct = self._enc.encrypt(self._kit.array(packed, self._phe.BigintEncoderParams()))
        return bytes(ct.serialize(self._hnp.MatrixSerializeFormat.Best))

    def encrypt_ints(self, v: IntArray) -> bytes:
        arr = np.empty((len(v), 1), dtype=object)
        arr[:, 0] = [int(a) for a in v.tolist()]
        ct = self._enc.encrypt(self._kit.array(arr, self._phe.BigintEncoderParams()))
        return bytes(ct.serialize(self._hnp.MatrixSerializeFormat.Best))

    def decrypt_ints(self, blob: bytes) -> list[int]:
        if not blob:
            return []
        try:
            ct = self._hnp.CiphertextArray.load_from(blob)
        except Exception as e:
            raise RemoteProtocolError(f"malformed ciphertext array ({type(e).__name__})") from e
        return [int(v) for v in self._dec.decrypt(ct).to_numpy().ravel().tolist()]

    def decrypt_sums(self, blob: bytes, shift: int) -> tuple[list[int], list[int]]:
        return _unpack(self.decrypt_ints(blob), shift)


class HeuSummer:
    """Passive side: the active party's public key only."""

    sub_costly = True

    def __init__(self, public_key: bytes) -> None:
        hnp, phe = _heu()
        try:
            self._kit = hnp.setup(phe.PublicKey.load_from(public_key))
        except Exception as e:
            raise RemoteProtocolError(f"malformed HE public key ({type(e).__name__})") from e
        self._ev = self._kit.evaluator()
        self._hnp, self._phe = hnp, phe

    def load(self, blob: bytes) -> Any:
        try:
            return self._hnp.CiphertextArray.load_from(blob)
        except Exception as e:
            raise RemoteProtocolError(f"malformed ciphertext array ({type(e).__name__})") from e

    def bucket_sums(self, ct: Any, groups: list[npt.NDArray[np.int8]], bins: npt.NDArray[np.int8],
                    n_bins: int) -> list[Any]:
        if not groups:
            return []
        maps = [g.reshape(1, -1) for g in groups]
        return list(self._ev.batch_feature_wise_bucket_sum(ct, maps, np.ascontiguousarray(bins), n_bins, False))

    def sub(self, a: Any, b: Any) -> Any:
        return self._ev.sub(a, b)

    def select_sums(self, hist: Any, index_lists: list[list[int]]) -> bytes:
        if not index_lists:
            return b""
        r = self._ev.batch_select_sum(hist, index_lists)
        return bytes(r.serialize(self._hnp.MatrixSerializeFormat.Best))

    def zero_hist(self, rows: int) -> Any:
        z = np.zeros((rows, 1), dtype=object)
        return self._kit.encryptor().encrypt(self._kit.array(z, self._phe.BigintEncoderParams()))

    def add_masks(self, ct: Any, masks: list[int]) -> bytes:
        """``ct + masks`` (one mask per row of ``ct``), serialized."""
        arr: Any = np.empty(len(masks), dtype=object)
        arr[:] = masks
        if ct.ndim == 2:
            arr = arr.reshape(len(masks), 1)
        pt = self._kit.array(arr, self._phe.BigintEncoderParams())
        r = self._ev.add(ct, pt)
        return bytes(r.serialize(self._hnp.MatrixSerializeFormat.Best))


# ---------------------------------------------------------------------- plaintext

# The plaintext mode runs the very same protocol with the "ciphertexts" being the packed
# integers themselves (codec-encoded int lists), so HE and plaintext runs give identical
# trees; it is for tests and for measuring the cost of the encryption, not for production.


def _ints_to_bytes(v: list[int]) -> bytes:
    from party.codec import encode

    return bytes(encode([int(x) for x in v]))


def _ints_from_bytes(blob: bytes) -> list[int]:
    from party.codec import decode

    if not blob:
        return []
    v = decode(blob)
    if not isinstance(v, list) or not all(isinstance(x, int) for x in v):
        raise RemoteProtocolError("malformed plaintext sums")
    return v


class PlainCipher:
    scheme = "plaintext"

    def public_bytes(self) -> bytes:
        return b""

    def encrypt(self, g_q: IntArray, h_q: IntArray, shift: int) -> bytes:
        return _ints_to_bytes([(int(a) << shift) + int(b) for a, b in zip(g_q.tolist(), h_q.tolist(), strict=True)])

    def encrypt_ints(self, v: IntArray) -> bytes:
        return _ints_to_bytes([int(a) for a in v.tolist()])

    def decrypt_ints(self, blob: bytes) -> list[int]:
        return _ints_from_bytes(blob)

    def decrypt_sums(self, blob: bytes, shift: int) -> tuple[list[int], list[int]]:
        return _unpack(_ints_from_bytes(blob), shift)


class PlainSummer:
    sub_costly = False

    def load(self, blob: bytes) -> Any:
        return np.array(_ints_from_bytes(blob), dtype=object)

    def bucket_sums(self, ct: Any, groups: list[npt.NDArray[np.int8]], bins: npt.NDArray[np.int8],
                    n_bins: int) -> list[Any]:
        out = []
        n_feat = bins.shape[1]
        for g in groups:
            h = np.zeros(n_feat * n_bins, dtype=object)
            sel = np.flatnonzero(g)
            for f in range(n_feat):
                np.add.at(h, f * n_bins + bins[sel, f].astype(np.int64), ct[sel])
            out.append(h)
        return out

    def sub(self, a: Any, b: Any) -> Any:
        return a - b

    def select_sums(self, hist: Any, index_lists: list[list[int]]) -> bytes:
        return _ints_to_bytes([int(sum(hist[i] for i in idx)) for idx in index_lists])

    def zero_hist(self, rows: int) -> Any:
        return np.zeros(rows, dtype=object)

    def add_masks(self, ct: Any, masks: list[int]) -> bytes:
        return _ints_to_bytes([int(a) + int(m) for a, m in zip(ct.tolist(), masks, strict=True)])


def _unpack(vals: list[int], shift: int) -> tuple[list[int], list[int]]:
    mask = (1 << shift) - 1
    gs, hs = [], []
    for v in vals:
        h = v & mask
        gs.append((v - h) >> shift)
        hs.append(h)
    return gs, hs


def make_cipher(scheme: str, key_bits: int = 2048) -> Cipher:
    if scheme == "plaintext":
        return PlainCipher()
    return HeuCipher(scheme, key_bits)


def make_summer(scheme: str, public_key: bytes) -> Summer:
    if scheme == "plaintext":
        return PlainSummer()
    if scheme not in ("ou", "paillier"):
        raise RemoteProtocolError(f"unknown HE scheme {scheme!r}")
    return HeuSummer(public_key)
