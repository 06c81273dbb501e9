"""The randomized Walsh–Hadamard rotation used by distributed DP (Kairouz et al. 2021, §4).

``rotate(x, seed, block=B)`` pads ``x`` with zeros to a multiple of the power of two
``B``, flips each coordinate's sign by a seeded Rademacher vector and applies the
orthonormal Hadamard transform ``H_B / sqrt(B)`` to each consecutive block of ``B``
coordinates. Each block has its own sign diagonal (its slice of the one Rademacher
vector the seed gives), so the map is block-diagonal with orthogonal blocks: it is
orthogonal, keeps the L2 norm exactly, and inverts exactly (up to float rounding). It
flattens within each block: an output coordinate is a sum of ``B`` terms with random
signs, so its magnitude is about ``||x_block|| / sqrt(B) <= ||x|| / sqrt(B)`` whatever
the input looked like. That flattening is what lets a small modulus hold the quantised
sum (``dp.distributed`` sizes the modulus by it, with ``B`` in the bound).

``block=None`` is one block of the next power of two ``>= len(x)`` (the classic
transform). Blocks bound the padding: one block pads the CNN's 1,663,370 values to
2**21 (+26 %); blocks of 2**15 pad to 1,671,168 (+0.47 %). :func:`block_size` picks
the block for a dimension.

The transform of a block is a product of small dense Hadamard matrices, since in
Sylvester's order ``H_{abc} = H_a ⊗ H_b ⊗ H_c``: three passes of matrix products of
size ``a``, ``b`` and ``c`` (32 each for 2**15) along the axes of a ``(-1, a, b, c)``
view, about 4x faster in numpy than ``log2 B`` butterfly passes.

The seed is public to the round (every client and the server use the same one, drawn
fresh each round): the rotation is a conditioning step, not a secret.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: the largest block :func:`block_size` picks (the flattening gets better with B)
MAX_BLOCK = 1 << 15
#: the smallest block :func:`block_size` picks for a dimension above it
MIN_BLOCK = 1 << 10
#: :func:`block_size` takes the largest block whose padding is at most this share of d
PAD_SLACK = 0.01


def padded_dim(d: int) -> int:
    """The smallest power of two ``>= d`` (at least 1)."""
    if d < 1:
        raise ValueError(f"dimension must be >= 1, got {d}")
    return 1 << (d - 1).bit_length()


def padded_len(d: int, block: int | None = None) -> int:
    """The rotated length of a ``d``-vector: ``d`` rounded up to a multiple of ``block``."""
    b = _check_block(block, d)
    return -(-d // b) * b


def block_size(d: int) -> int:
    """The rotation block for dimension ``d``: little padding, and as large as allows.

    The largest power of two ``B`` in ``[MIN_BLOCK, MAX_BLOCK]`` (and at most
    ``padded_dim(d)``) whose padding ``ceil(d/B)·B − d`` is at most ``PAD_SLACK·d``;
    if none is, the one with the least padding (the larger on a tie). A ``d`` up to
    ``MIN_BLOCK`` is one block of ``padded_dim(d)``.
    """
    top = min(MAX_BLOCK, padded_dim(d))
    if top <= MIN_BLOCK:
        return top
    cands = []
    b = top
    while b >= MIN_BLOCK:
        cands.append(b)
        b //= 2
    for b in cands:
        if padded_len(d, b) - d <= PAD_SLACK * d:
            return b
    return min(cands, key=lambda b: (padded_len(d, b), -b))


def _check_block(block: int | None, d: int) -> int:
    if d < 1:
        raise ValueError(f"dimension must be >= 1, got {d}")
    if block is None:
        return padded_dim(d)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1 or block & (block - 1):
        raise ValueError(f"rotation block must be a power of two >= 1, got {block!r}")
    return block


@functools.lru_cache(maxsize=16)
def _hadamard(n: int) -> np.ndarray:
    """The unnormalised Sylvester Hadamard matrix ``H_n`` (read-only float64)."""
    i = np.arange(n)
    bits = np.bitwise_and.outer(i, i)
    parity = np.zeros((n, n), dtype=np.int64)
    while bits.any():
        parity ^= bits & 1
        bits >>= 1
    h = 1.0 - 2.0 * parity
    h.setflags(write=False)
    return h


#: the largest dense Hadamard factor: every matrix product below is at most
#: 32·32·32 multiply-adds, small enough that BLAS runs it in the calling thread (a
#: threaded BLAS on one tall product spun on a busy machine: 3x slower than one core)
_MAX_FACTOR = 32


def _factors(block: int) -> list[int]:
    """``block = 2**k`` as the fewest near-equal powers of two of at most ``_MAX_FACTOR``."""
    k = block.bit_length() - 1
    if k == 0:
        return []
    per = _MAX_FACTOR.bit_length() - 1
    nf = -(-k // per)
    parts = [k // nf + (1 if i < k % nf else 0) for i in range(nf)]
    return [1 << p for p in parts]


def _wht_blocks(x: np.ndarray, block: int) -> np.ndarray:
    """The unnormalised Walsh–Hadamard transform of each block of ``x`` (a new array).

    ``x`` is float64, contiguous, of a length that is a multiple of ``block``; it is
    used as scratch space (its contents are overwritten). With ``block = f_1·…·f_r``
    the transform applies ``H_{f_i}`` along each axis of the ``(-1, f_1, …, f_r)`` view,
    lowest axis first, as batches of small matrix products.
    """
    fs = _factors(block)
    if not fs:  # block 1: the identity
        return x.copy()
    q = _MAX_FACTOR
    src, dst = x, np.empty_like(x)
    inner = 1  # the product of the factors below the current axis
    for f in reversed(fs):
        h = _hadamard(f)
        if inner == 1:  # rows of f along the last axis: (r × f) @ H_f per batch
            rows = math.gcd(src.shape[0] // f, q)
            np.matmul(src.reshape(-1, rows, f), h, out=dst.reshape(-1, rows, f))
        elif inner <= q:  # H_f @ (f × inner) per batch
            np.matmul(h, src.reshape(-1, f, inner), out=dst.reshape(-1, f, inner))
        else:  # H_f @ (f × q) per batch, over column chunks of q of the (f × inner) slab
            view = (-1, f, inner // q, q)
            np.matmul(h, src.reshape(view).transpose(0, 2, 1, 3),
                      out=dst.reshape(view).transpose(0, 2, 1, 3))
        inner *= f
        src, dst = dst, src
    return src


def fwht(a: np.ndarray) -> np.ndarray:
    """The orthonormal Walsh–Hadamard transform of a length-2^k float vector (a copy)."""
    n = a.shape[0]
    if n < 1 or n & (n - 1):
        raise ValueError(f"length must be a power of two, got {n}")
    out = _wht_blocks(np.array(a, dtype=np.float64), n)
    out *= 1.0 / np.sqrt(n)
    return out


def _flip_signs(x: np.ndarray, seed: int) -> None:
    """Multiply ``x`` in place by the seed's Rademacher vector (flip IEEE sign bits)."""
    n = x.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5254]))
    bits = np.unpackbits(np.frombuffer(rng.bytes((n + 7) // 8), np.uint8), count=n)
    flip = bits.astype(np.uint64)
    flip <<= np.uint64(63)
    view = x.view(np.uint64)
    view ^= flip


def rotate(x: np.ndarray, seed: int, block: int | None = None) -> np.ndarray:
    """``(H_B D_seed) pad(x) / sqrt(B)`` blockwise: an orthogonal rotation (length :func:`padded_len`)."""
    v = np.asarray(x, dtype=np.float64).ravel()
    b = _check_block(block, v.shape[0])
    padded = np.zeros(padded_len(v.shape[0], b))
    padded[: v.shape[0]] = v
    _flip_signs(padded, seed)
    out = _wht_blocks(padded, b)
    out *= 1.0 / np.sqrt(b)
    return out


def unrotate(y: np.ndarray, seed: int, d: int, block: int | None = None) -> np.ndarray:
    """The inverse of :func:`rotate` (same ``seed`` and ``block``), cut back to ``d`` coordinates."""
    v = np.asarray(y, dtype=np.float64).ravel()
    b = _check_block(block, d)
    want = padded_len(d, b)
    if v.shape[0] != want:
        raise ValueError(f"rotated length {v.shape[0]} does not match dimension {d} (want {want})")
    out = _wht_blocks(np.array(v, dtype=np.float64), b)  # H is its own inverse up to 1/B
    out *= 1.0 / np.sqrt(b)
    _flip_signs(out, seed)
    return out[:d]
