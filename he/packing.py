"""Slot packing for ciphertext × plaintext products (pure numpy, no HE).

Two layouts of a (rows × m) matrix X over ciphertexts of ``slots`` slots:

* **column-blocked** (:func:`pack_cols`): the batch runs along the slots. A block
  of ``blk = next_pow2(rows)`` slots holds one column; a ciphertext holds
  ``nb = slots // blk`` columns. Column i sits in ciphertext ``i // nb``, block
  ``i % nb``. Multiplying ciphertext c by a plaintext whose block p is the scalar
  ``M[c*nb + p, o]`` and summing over c gives, per block, a partial sum of
  ``(X M)[:, o]``; the decrypting party adds the ``nb`` blocks (:func:`sum_blocks`).
* **row-blocked** (:func:`pack_rows`): rows are contiguous runs of
  ``m_pad = next_pow2(m)`` slots, ``slots // m_pad`` rows per ciphertext.
  Multiplying ciphertext c by a plaintext that repeats ``δ[b, j]`` over row b's
  run and summing over c gives partial sums of ``(Xᵀ δ)[:, j]``; the decrypting
  party adds the row runs (:func:`sum_rows`).

Every homomorphic operation is then ciphertext × plaintext: no rotations.
Batches longer than the slot count are split into chunks of at most ``slots``
rows (:func:`chunks`); threats.md row 29. These are the split layer's layouts
(``vfl.he.layer``); FTL's replicated column blocks are ``ftl.he.Layout``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def prev_pow2(n: int) -> int:
    """The largest power of two <= n (1 for n <= 1)."""
    return 1 << (max(1, int(n)).bit_length() - 1)


def chunks(rows: int, slots: int) -> list[slice]:
    """Row ranges of at most ``slots`` rows each."""
    return [slice(i, min(rows, i + slots)) for i in range(0, max(rows, 1), slots)]


def col_layout(rows: int, m: int, slots: int) -> tuple[int, int, int]:
    """(block size, blocks per ciphertext, ciphertexts) of the column-blocked layout."""
    if rows < 1 or rows > slots:
        raise ValueError(f"column-blocked packing needs 1..{slots} rows, got {rows}")
    blk = next_pow2(rows)
    nb = slots // blk
    return blk, nb, -(-m // nb)


def _runs(records: FloatArray, layout: tuple[int, int, int], slots: int) -> FloatArray:
    """Slot vectors (ciphertexts, slots) of a layout (run length, runs per ciphertext,
    ciphertexts): run i starts with the values of ``records[i]``, zeros elsewhere."""
    width, per, n_ct = layout
    out = np.zeros((n_ct * per, width), dtype=np.float64)
    out[:records.shape[0], :records.shape[1]] = records
    return out.reshape(n_ct, slots)


def pack_cols(x: FloatArray, slots: int) -> FloatArray:
    """Column-blocked slot vectors of ``x`` (rows ≤ slots): shape (ciphertexts, slots)."""
    rows, m = x.shape
    return _runs(x.T, col_layout(rows, m, slots), slots)


def col_weights(mat: FloatArray, rows: int, slots: int, o: int) -> FloatArray:
    """Plaintext vectors (ciphertexts, slots) whose block p of ct c is ``mat[c*nb+p, o]``."""
    layout = col_layout(rows, mat.shape[0], slots)
    return _runs(np.repeat(mat[:, o:o + 1], layout[0], axis=1), layout, slots)


def sum_blocks(v: FloatArray, rows: int, slots: int) -> FloatArray:
    """Add the blocks of one decrypted column-blocked vector: (rows,)."""
    blk = next_pow2(rows)
    return v.reshape(slots // blk, blk).sum(axis=0)[:rows]


def row_layout(rows: int, m: int, slots: int) -> tuple[int, int, int]:
    """(run length, rows per ciphertext, ciphertexts) of the row-blocked layout."""
    m_pad = next_pow2(m)
    if m_pad > slots:
        raise ValueError(f"row-blocked packing needs at most {slots} columns, got {m}")
    per = slots // m_pad
    return m_pad, per, -(-rows // per)


def pack_rows(x: FloatArray, slots: int) -> FloatArray:
    """Row-blocked slot vectors of ``x``: shape (ciphertexts, slots)."""
    rows, m = x.shape
    return _runs(x, row_layout(rows, m, slots), slots)


def row_weights(col: FloatArray, m: int, slots: int) -> FloatArray:
    """Plaintext vectors that repeat ``col[b]`` over row b's run: (ciphertexts, slots)."""
    layout = row_layout(col.shape[0], m, slots)
    return _runs(np.repeat(col[:, None], layout[0], axis=1), layout, slots)


def sum_rows(v: FloatArray, m: int, slots: int) -> FloatArray:
    """Add the row runs of one decrypted row-blocked vector: (m,)."""
    m_pad = next_pow2(m)
    return v.reshape(slots // m_pad, m_pad).sum(axis=0)[:m]


__all__ = [
    "chunks",
    "col_layout",
    "col_weights",
    "next_pow2",
    "pack_cols",
    "pack_rows",
    "prev_pow2",
    "row_layout",
    "row_weights",
    "sum_blocks",
    "sum_rows",
]
