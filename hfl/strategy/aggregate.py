"""Aggregation arithmetic: pure NumPy, float64 accumulation, deterministic order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hfl.common import Metrics, NDArrays


def weighted_sum(results: Sequence[tuple[NDArrays, int]]) -> tuple[list[np.ndarray], int]:
    """Return (Σ n_k · w_k per array, Σ n_k), accumulated in float64 in the given order."""
    if not results:
        raise ValueError("weighted_sum of no results")
    first, _ = results[0]
    sums = [np.zeros(a.shape, np.float64) for a in first]
    total = 0
    for arrays, n in results:
        for s, a in zip(sums, arrays, strict=True):
            s += np.float64(n) * np.asarray(a, np.float64)
        total += int(n)
    return sums, total


def weighted_average(results: Sequence[tuple[NDArrays, int]]) -> list[np.ndarray]:
    """FedAvg: Σ n_k w_k / Σ n_k per array, in float64."""
    sums, total = weighted_sum(results)
    if total <= 0:
        raise ValueError("weighted_average: the examples sum to zero")
    return [s / total for s in sums]


def cast_like(arrays: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> NDArrays:
    """Cast each array to the dtype of the matching reference array (ints are rounded)."""
    out: NDArrays = []
    for a, r in zip(arrays, ref, strict=True):
        if r.dtype.kind in "iub":
            out.append(np.rint(a).astype(r.dtype))
        else:
            out.append(np.asarray(a).astype(r.dtype, copy=False))
    return out


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One float64 vector of all arrays (the order of secure aggregation's input)."""
    if not arrays:
        return np.zeros(0)
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def unflatten(vec: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Inverse of :func:`flatten` (float64 arrays with the shapes of ``like``)."""
    out, pos = [], 0
    for r in like:
        n = int(np.prod(r.shape, dtype=np.int64))
        out.append(np.asarray(vec[pos : pos + n], np.float64).reshape(r.shape))
        pos += n
    if pos != vec.size:
        raise ValueError(f"vector of {vec.size} values does not fit shapes totalling {pos}")
    return out


def weighted_metrics(metrics: Sequence[tuple[int, Metrics]]) -> Metrics:
    """Example-weighted mean of every numeric metric (a handy ``*_metrics_aggregation_fn``)."""
    total: dict[str, float] = {}
    weight: dict[str, int] = {}
    for n, m in metrics:
        for k, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[k] = total.get(k, 0.0) + n * float(v)
                weight[k] = weight.get(k, 0) + n
    return {k: total[k] / weight[k] for k in total if weight[k] > 0}
