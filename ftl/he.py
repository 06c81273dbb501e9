"""Masked ``XᵀP`` under CKKS: the one homomorphic operation FTL needs, on the ``he`` engine.

The key owner encrypts a matrix X (rows × m) with its own key; the peer holds a
plaintext P (rows × K) and wants neither to reveal P nor to learn X. The peer
computes ``Enc(Xᵀ P) + mask`` with ciphertext × plaintext products only; the key
owner decrypts, adds up blocks, and returns the masked sums rounded and
noise-flooded (``he.ops.release``); the peer removes its mask.

Layout ("replicated column blocks"): rows are cut into chunks of ``blk`` (a power
of two) rows; in a chunk's ciphertext, column j of X fills block j (``blk``
slots), and the m blocks are repeated ``reps = slots // (blk·m)`` times. The
peer's plaintext for output ciphertext q puts, in replica t, column
``k = q·reps + t`` of P (per row) under every block. Slot (t, j, i) then holds
``X[i, j]·P[i, k]``; summing the chunks (homomorphically) and each block (after
decryption) gives ``(XᵀP)[j, k]``. One multiplicative level, no rotations, no
Galois or relinearisation keys (vfl_he.md design rules); batches longer than a
ciphertext are chunked (threats.md row 29).

Masks: a product whose sums only the peer may learn gets a uniform mask in every
slot (±``mask_bound``); the peer keeps the masks' block sums and subtracts them from
what the key owner releases. A product whose sums the key owner itself is meant to
learn ("open" blocks: its own gradient) gets a *zero-sum* mask instead: within each
block, slot i carries r_i − r_{i−1} (r uniform, cyclically), so every slot is still
hidden from the key owner (the per-row products X[i, j]·P[i, k] would reveal P row by
row) while each block sums to XᵀP exactly. Either way the mask enters as a fresh
public-key encryption, which also re-randomises the product ciphertext.

CKKS keys, parameters (HE-standard checks), serialization with size/level
checks, decryption budgets, rounding and the product kernel itself
(``he.ops.masked_dot``) come from ``he``; this module adds FTL's layout and masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from he.keys import CkksKeys, CkksPeer
from he.ops import masked_dot, release
from he.packing import next_pow2, prev_pow2
from he.params import CkksParams, HeError
from party.errors import RemoteProtocolError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Layout:
    """Where X (rows × m) sits in the slots of its ciphertexts."""

    rows: int
    m: int
    slots: int

    def __post_init__(self) -> None:
        if self.rows < 1 or self.m < 1:
            raise ValueError(f"empty matrix ({self.rows} × {self.m})")
        if self.m > self.slots:
            raise ValueError(f"{self.m} columns do not fit {self.slots} slots")

    @property
    def blk(self) -> int:
        return min(next_pow2(self.rows), prev_pow2(self.slots // self.m))

    @property
    def reps(self) -> int:
        return self.slots // (self.blk * self.m)

    @property
    def chunks(self) -> int:
        return -(-self.rows // self.blk)

    def outputs(self, k: int) -> int:
        """Ciphertexts in the product with a P of ``k`` columns."""
        return -(-k // self.reps)

    def pack(self, x: FloatArray) -> FloatArray:
        """Slot vectors of X: (chunks, slots)."""
        if x.shape != (self.rows, self.m):
            raise ValueError(f"expected a {self.rows} × {self.m} matrix, got {x.shape}")
        blk, reps, n = self.blk, self.reps, self.chunks
        pad = np.zeros((n * blk, self.m))
        pad[: self.rows] = x
        one = pad.reshape(n, blk, self.m).transpose(0, 2, 1).reshape(n, self.m * blk)
        out = np.zeros((n, self.slots))
        out[:, : reps * self.m * blk] = np.tile(one, (1, reps))
        return out

    def weights(self, p: FloatArray, q: int) -> FloatArray:
        """The peer's plaintext vectors for output ciphertext q: (chunks, slots)."""
        blk, reps, n, m = self.blk, self.reps, self.chunks, self.m
        k = p.shape[1]
        pad = np.zeros((n * blk, reps))
        cols = range(q * reps, min(k, (q + 1) * reps))
        for t, kk in enumerate(cols):
            pad[: self.rows, t] = p[:, kk]
        # (chunk, rep, block j, row i) = P[chunk·blk + i, q·reps + t]
        per = pad.reshape(n, blk, reps).transpose(0, 2, 1)[:, :, None, :]
        full = np.broadcast_to(per, (n, reps, m, blk)).reshape(n, reps * m * blk)
        out = np.zeros((n, self.slots))
        out[:, : reps * m * blk] = full
        return out

    def block_sums(self, v: FloatArray) -> FloatArray:
        """Sum each block of one decrypted (or mask) vector: (m, reps)."""
        used = self.reps * self.m * self.blk
        return v[:used].reshape(self.reps, self.m, self.blk).sum(axis=2).T

    def assemble(self, sums: list[FloatArray], k: int) -> FloatArray:
        """(m × k) result from the block sums of each output ciphertext."""
        out = np.concatenate(sums, axis=1) if sums else np.zeros((self.m, 0))
        return np.asarray(out[:, :k], dtype=np.float64)


def encrypt(keys: CkksKeys, x: FloatArray) -> list[bytes]:
    """Encrypt X under our own key in the replicated column-block layout."""
    lay = Layout(x.shape[0], x.shape[1], keys.params.slots)
    return [keys.encrypt_symmetric(v) for v in lay.pack(x)]


def check_range(params: CkksParams, x: FloatArray, p: FloatArray, what: str) -> None:
    """Refuse products whose slots could leave the range CKKS decrypts correctly."""
    if x.size == 0 or p.size == 0:
        return
    worst = float(np.abs(x).max()) * float(np.abs(p).max())
    limit = params.range_limit / 4 - params.mask_bound
    if not math.isfinite(worst) or worst > limit:
        raise HeError(
            f"{what}: slot products up to {worst:.3g} exceed the CKKS range budget "
            f"{limit:.3g} (range_limit/4 − mask_bound); the model diverged or inputs are unscaled"
        )


def zero_sum_mask(rng: np.random.Generator, bound: float, blocks: int, blk: int) -> FloatArray:
    """``blocks`` blocks of ``blk`` slots, each slot r_i − r_{i−1} (cyclic, r uniform in
    ±bound): every slot masked, every block summing to zero."""
    r = rng.uniform(-bound, bound, (blocks, blk))
    return np.asarray((r - np.roll(r, 1, axis=1)).reshape(-1), dtype=np.float64)


def masked_product(peer: CkksPeer, blobs: list[bytes], rows: int, m: int, p: FloatArray,
                   rng: np.random.Generator, *, peer_name: str, open_blocks: bool = False
                   ) -> tuple[list[bytes], FloatArray]:
    """``Enc(XᵀP + masks)`` from the key owner's ``Enc(X)``; returns the ciphertexts and
    the (m × K) mask sums to subtract from the returned block sums (zero with
    ``open_blocks``: zero-sum masks, the key owner learns XᵀP)."""
    lay = Layout(rows, m, peer.params.slots)
    if p.ndim != 2 or p.shape[0] != rows:
        raise ValueError(f"plaintext must have {rows} rows, got shape {p.shape}")
    if len(blobs) != lay.chunks:
        raise RemoteProtocolError(
            f"expected {lay.chunks} ciphertexts for a {rows} × {m} matrix, got {len(blobs)}",
            peer=peer_name,
        )
    cts = [peer.load_ciphertext(b, level="top") for b in blobs]
    out: list[bytes] = []
    mask_sums: list[FloatArray] = []
    k = p.shape[1]
    for q in range(lay.outputs(k)):
        if open_blocks:
            mask = np.zeros(peer.params.slots)
            used = lay.reps * lay.m * lay.blk
            mask[:used] = zero_sum_mask(rng, peer.params.mask_bound, lay.reps * lay.m, lay.blk)
        else:
            mask = rng.uniform(-peer.params.mask_bound, peer.params.mask_bound, peer.params.slots)
        out.append(masked_dot(peer, cts, lay.weights(p, q), mask))
        mask_sums.append(np.zeros((lay.m, lay.reps)) if open_blocks else lay.block_sums(mask))
    return out, lay.assemble(mask_sums, k)


def decrypt_sums(keys: CkksKeys, blobs: list[bytes], rows: int, m: int, k: int,
                 rng: np.random.Generator, *, peer_name: str) -> FloatArray:
    """Decrypt a masked product, add up its blocks, and release it (rounded, flooded)."""
    lay = Layout(rows, m, keys.params.slots)
    if len(blobs) != lay.outputs(k):
        raise RemoteProtocolError(
            f"expected {lay.outputs(k)} product ciphertexts, got {len(blobs)}", peer=peer_name
        )
    sums = [lay.block_sums(keys.decrypt(keys.load_ciphertext(b, level="last"))) for b in blobs]
    return release(lay.assemble(sums, k), keys.params, rng)


def decryptions_needed(rows: int, m: int, k: int, params: CkksParams) -> int:
    return Layout(rows, m, params.slots).outputs(k)


class Packing:
    """Several matrices X_r (rows_r × m_r), each to be multiplied by a peer plaintext with
    K_r columns, in as few ciphertexts as possible.

    When one replica of every matrix fits one ciphertext (small batches: the usual FTL
    case), they share one input ciphertext and their products share the output
    ciphertexts: one encryption, one mask encryption and one decryption per output for
    all of them. Otherwise each matrix gets its own ``Layout`` (chunked).
    """

    def __init__(self, shapes: list[tuple[int, int]], ks: list[int], slots: int) -> None:
        if len(shapes) != len(ks) or not shapes:
            raise ValueError("one K per matrix is needed")
        self.shapes, self.ks, self.slots = list(shapes), list(ks), slots
        self.sizes = [next_pow2(r) * m for r, m in shapes]
        self.combined = sum(self.sizes) <= slots and all(k >= 1 for k in ks)
        if self.combined:
            q = 1
            while sum(sz * -(-k // q) for sz, k in zip(self.sizes, ks, strict=True)) > slots:
                q += 1
            self.n_out = q
            self.reps = [-(-k // q) for k in ks]
            offs, o = [], 0
            for sz, r in zip(self.sizes, self.reps, strict=True):
                offs.append(o)
                o += sz * r
            self.offsets = offs
        else:
            self.layouts = [Layout(r, m, slots) for r, m in shapes]

    @property
    def n_in(self) -> int:
        return 1 if self.combined else sum(lay.chunks for lay in self.layouts)

    @property
    def n_outputs(self) -> int:
        return self.n_out if self.combined else sum(
            lay.outputs(k) for lay, k in zip(self.layouts, self.ks, strict=True))

    def pack(self, xs: list[FloatArray]) -> FloatArray:
        assert self.combined
        v = np.zeros(self.slots)
        for (rows, m), x, sz, r, off in zip(self.shapes, xs, self.sizes, self.reps, self.offsets,
                                            strict=True):
            if x.shape != (rows, m):
                raise ValueError(f"expected a {rows} × {m} matrix, got {x.shape}")
            blk = sz // m
            one = np.zeros((m, blk))
            one[:, :rows] = x.T
            v[off:off + r * sz] = np.tile(one.reshape(-1), r)
        return v

    def weights(self, ps: list[FloatArray], q: int) -> FloatArray:
        assert self.combined
        w = np.zeros(self.slots)
        for (rows, m), p, sz, r, off in zip(self.shapes, ps, self.sizes, self.reps, self.offsets,
                                            strict=True):
            blk = sz // m
            cols = p[:, q * r: min((q + 1) * r, p.shape[1])]  # (rows, r') for replicas 0..r'-1
            if cols.shape[1] == 0:
                continue
            pad = np.zeros((cols.shape[1], 1, blk))
            pad[:, 0, :rows] = cols.T
            # replica t: column q·r + t of P under every one of the m blocks
            w[off: off + cols.shape[1] * sz] = np.broadcast_to(pad, (cols.shape[1], m, blk)).ravel()
        return w

    def mask(self, rng: np.random.Generator, bound: float, open_blocks: list[bool]) -> FloatArray:
        """One output's mask: uniform, or zero-sum per block in the ``open_blocks`` regions."""
        assert self.combined
        v = rng.uniform(-bound, bound, self.slots)
        for (_rows, m), sz, r, off, op in zip(self.shapes, self.sizes, self.reps, self.offsets,
                                              open_blocks, strict=True):
            if op:
                v[off:off + r * sz] = zero_sum_mask(rng, bound, r * m, sz // m)
        return v

    def block_sums(self, v: FloatArray) -> list[FloatArray]:
        """(m_r × reps_r) block sums of each region of one output vector."""
        out = []
        for (_rows, m), sz, r, off in zip(self.shapes, self.sizes, self.reps, self.offsets,
                                          strict=True):
            blk = sz // m
            out.append(v[off:off + r * sz].reshape(r, m, blk).sum(axis=2).T)
        return out

    def assemble(self, per_out: list[list[FloatArray]]) -> list[FloatArray]:
        res = []
        for i, ((_rows, m), k) in enumerate(zip(self.shapes, self.ks, strict=True)):
            cols = [o[i] for o in per_out]
            mat = np.concatenate(cols, axis=1) if cols else np.zeros((m, 0))
            res.append(np.asarray(mat[:, :k], dtype=np.float64))
        return res


def encrypt_many(keys: CkksKeys, xs: list[FloatArray], ks: list[int]) -> list[bytes]:
    """Encrypt several matrices under our key (``Packing``); ``ks`` = the peer's column counts."""
    pk = Packing([x.shape for x in xs], ks, keys.params.slots)  # type: ignore[misc]
    if pk.combined:
        return [keys.encrypt_symmetric(pk.pack(xs))]
    return [b for x in xs for b in encrypt(keys, x)]


def masked_product_many(peer: CkksPeer, blobs: list[bytes], shapes: list[tuple[int, int]],
                        ps: list[FloatArray], rng: np.random.Generator, *, peer_name: str,
                        open_blocks: list[bool] | None = None
                        ) -> tuple[list[bytes], list[FloatArray]]:
    """``masked_product`` for a ``Packing``: masked Enc(X_rᵀP_r) and the mask sums per matrix
    (``open_blocks[r]``: zero-sum masks, the key owner learns X_rᵀP_r; its mask sums are 0)."""
    opens = list(open_blocks) if open_blocks is not None else [False] * len(shapes)
    if len(opens) != len(shapes):
        raise ValueError("one open_blocks flag per matrix is needed")
    pk = Packing(shapes, [p.shape[1] for p in ps], peer.params.slots)
    if len(blobs) != pk.n_in:
        raise RemoteProtocolError(f"expected {pk.n_in} ciphertexts, got {len(blobs)}",
                                  peer=peer_name)
    for (rows, _m), p in zip(shapes, ps, strict=True):
        if p.ndim != 2 or p.shape[0] != rows:
            raise ValueError(f"plaintext must have {rows} rows, got shape {p.shape}")
    if not pk.combined:
        outs: list[bytes] = []
        masks: list[FloatArray] = []
        i = 0
        for lay, (rows, m), p, op in zip(pk.layouts, shapes, ps, opens, strict=True):
            o, msk = masked_product(peer, blobs[i:i + lay.chunks], rows, m, p, rng,
                                    peer_name=peer_name, open_blocks=op)
            i += lay.chunks
            outs += o
            masks.append(msk)
        return outs, masks
    cts = [peer.load_ciphertext(blobs[0], level="top")]
    out: list[bytes] = []
    per_out: list[list[FloatArray]] = []
    for q in range(pk.n_out):
        wv = pk.weights(ps, q)
        mask = pk.mask(rng, peer.params.mask_bound, opens)
        out.append(masked_dot(peer, cts, wv[None, :], mask))
        per_out.append([np.zeros_like(b) if op else b
                        for b, op in zip(pk.block_sums(mask), opens, strict=True)])
    return out, pk.assemble(per_out)


def decrypt_many(keys: CkksKeys, blobs: list[bytes], shapes: list[tuple[int, int]],
                 ks: list[int], rng: np.random.Generator, *, peer_name: str) -> list[FloatArray]:
    """Decrypt, block-sum and release a ``masked_product_many`` result."""
    pk = Packing(shapes, ks, keys.params.slots)
    if len(blobs) != pk.n_outputs:
        raise RemoteProtocolError(f"expected {pk.n_outputs} product ciphertexts, got "
                                  f"{len(blobs)}", peer=peer_name)
    if not pk.combined:
        res, i = [], 0
        for lay, (rows, m), k in zip(pk.layouts, shapes, ks, strict=True):
            n = lay.outputs(k)
            res.append(decrypt_sums(keys, blobs[i:i + n], rows, m, k, rng, peer_name=peer_name))
            i += n
        return res
    per_out = [pk.block_sums(keys.decrypt(keys.load_ciphertext(b, level="last"))) for b in blobs]
    return [release(r, keys.params, rng) for r in pk.assemble(per_out)]


def decryptions_needed_many(shapes: list[tuple[int, int]], ks: list[int],
                            params: CkksParams) -> int:
    return Packing(shapes, ks, params.slots).n_outputs


__all__ = [
    "Layout",
    "Packing",
    "check_range",
    "decrypt_many",
    "decrypt_sums",
    "decryptions_needed",
    "decryptions_needed_many",
    "encrypt",
    "encrypt_many",
    "masked_product",
    "masked_product_many",
    "zero_sum_mask",
]
