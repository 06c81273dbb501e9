"""Seeded schedules: row orders every party derives alike from a shared seed.

Vertical and transfer learning never send a row order: each party computes the same
validation split and the same shuffled mini-batches of its aligned rows from the
shared seed and the epoch (numpy's ``default_rng`` over a list of integers, so the
schedule is the same on every machine and numpy version that keeps PCG64). One
implementation serves ``vfl`` (``stream`` 2, batches of ``batch_size`` rows, the last
one shorter) and ``ftl`` (``stream`` 7, ``balanced``: ``n // batch_size`` batches of
nearly equal size). What a party learns from it: nothing (it is public, like the seed).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def shuffled(items: int | npt.ArrayLike, seed: int, *stream: int) -> np.ndarray:
    """``items`` (or ``arange(items)``) in the order drawn from ``[seed, *stream]``."""
    return np.random.default_rng([seed, *stream]).permutation(items)  # type: ignore[arg-type]


def epoch_batches(items: int | npt.ArrayLike, batch_size: int, seed: int, epoch: int, *,
                  stream: int, balanced: bool = False) -> list[np.ndarray]:
    """This epoch's shuffled mini-batches of ``items`` (an array of row indices, or a count).

    ``balanced=False``: consecutive runs of ``batch_size`` (the last may be shorter);
    ``balanced=True``: ``max(1, n // batch_size)`` batches of nearly equal size.
    """
    order = shuffled(items, seed, stream, epoch)
    if balanced:
        return list(np.array_split(order, max(1, len(order) // batch_size)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def split_rows(rows: int, val_fraction: float, seed: int, *, stream: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices, each sorted, from the shared seed.

    With ``val_fraction > 0`` and at least two rows, both parts keep at least one row.
    """
    perm = shuffled(rows, seed, stream)
    nv = round(rows * val_fraction)
    if val_fraction > 0 and rows >= 2:
        nv = max(1, min(rows - 1, nv))
    return np.sort(perm[nv:]), np.sort(perm[:nv])


__all__ = ["epoch_batches", "shuffled", "split_rows"]
