"""Aggregation arithmetic (Flower's ``flwr.server.strategy.aggregate``, same numbers).

``aggregate``, ``aggregate_inplace``, ``weighted_loss_avg``, ``aggregate_median``,
``aggregate_trimmed_avg`` and the Bulyan helpers compute exactly what Flower's do,
in the same order and dtypes. tessera's own helpers follow: float64 sums for the
secure-aggregation path, flatten/unflatten, casting back to the model's dtypes and
an example-weighted metrics mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial, reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from hfl.common.parameter import parameters_to_ndarrays
from hfl.common.typing import FitRes, Metrics, NDArray, NDArrays

if TYPE_CHECKING:
    from hfl.server.client_proxy import ClientProxy


def aggregate(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Compute the example-weighted average (Flower's order: Σ n_k w_k, then / Σ n_k)."""
    num_examples_total = sum(num_examples for _, num_examples in results)
    weighted_weights = [[layer * num_examples for layer in weights] for weights, num_examples in results]
    weights_prime: NDArrays = [
        reduce(np.add, layer_updates) / num_examples_total
        for layer_updates in zip(*weighted_weights, strict=True)
    ]
    return weights_prime


def aggregate_inplace(results: list[tuple[ClientProxy, FitRes]]) -> NDArrays:
    """Compute the weighted average in place (Flower's: scale by n_k / Σ n, then add)."""
    num_examples_total = sum(fit_res.num_examples for _, fit_res in results)
    scaling_factors = np.asarray([fit_res.num_examples / num_examples_total for _, fit_res in results])

    def _try_inplace(x: NDArray, y: NDArray | np.float64, np_binary_op: np.ufunc) -> NDArray:
        return (  # type: ignore[no-any-return]
            np_binary_op(x, y, out=x)
            if np.can_cast(y, x.dtype, casting="same_kind")
            else np_binary_op(x, np.array(y, x.dtype), out=x)
        )

    params = [_try_inplace(x, scaling_factors[0], np_binary_op=np.multiply)
              for x in parameters_to_ndarrays(results[0][1].parameters)]
    for i, (_, fit_res) in enumerate(results[1:], start=1):
        res = (_try_inplace(x, scaling_factors[i], np_binary_op=np.multiply)
               for x in parameters_to_ndarrays(fit_res.parameters))
        params = [reduce(partial(_try_inplace, np_binary_op=np.add), layer_updates)
                  for layer_updates in zip(params, res, strict=True)]
    return params


def aggregate_median(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Coordinate-wise median."""
    weights = [weights for weights, _ in results]
    return [np.median(np.asarray(layer), axis=0) for layer in zip(*weights, strict=True)]


def weighted_loss_avg(results: list[tuple[int, float]]) -> float:
    """Example-weighted mean of the losses (``results``: (num_examples, loss) pairs)."""
    num_total_evaluation_examples = sum(num_examples for num_examples, _ in results)
    weighted_losses = [num_examples * loss for num_examples, loss in results]
    return sum(weighted_losses) / num_total_evaluation_examples


def _trim_mean(array: NDArray, proportiontocut: float) -> NDArray:
    axis = 0
    nobs = array.shape[axis]
    lowercut = int(proportiontocut * nobs)
    uppercut = nobs - lowercut
    if lowercut > uppercut:
        raise ValueError("Proportion too big.")
    atmp = np.partition(array, (lowercut, uppercut - 1), axis)
    slice_list: list[Any] = [slice(None)] * atmp.ndim
    slice_list[axis] = slice(lowercut, uppercut)
    result: NDArray = np.mean(atmp[tuple(slice_list)], axis=axis)
    return result


def aggregate_trimmed_avg(results: list[tuple[NDArrays, int]], proportiontocut: float) -> NDArrays:
    """Coordinate-wise trimmed mean (``proportiontocut`` cut at each end)."""
    weights = [weights for weights, _ in results]
    return [_trim_mean(np.asarray(layer), proportiontocut=proportiontocut)
            for layer in zip(*weights, strict=True)]


def _check_weights_equality(weights1: NDArrays, weights2: NDArrays) -> bool:
    """Whether two lists of arrays are equal, array by array."""
    if len(weights1) != len(weights2):
        return False
    return all(np.array_equal(a, b) for a, b in zip(weights1, weights2, strict=True))


def _find_reference_weights(reference_weights: NDArrays, list_of_weights: list[NDArrays]) -> int:
    """Index of ``reference_weights`` in ``list_of_weights``; ValueError when absent."""
    for idx, weights in enumerate(list_of_weights):
        if _check_weights_equality(reference_weights, weights):
            return idx
    raise ValueError("The reference weights not found in list_of_weights.")


def _aggregate_n_closest_weights(
    reference_weights: NDArrays, results: list[tuple[NDArrays, int]], beta_closest: int
) -> NDArrays:
    """Per coordinate, the mean of the ``beta_closest`` values closest to the reference."""
    list_of_weights = [weights for weights, _ in results]
    aggregated_weights = []
    for layer_id, layer_weights in enumerate(reference_weights):
        other_np = np.array([other_w[layer_id] for other_w in list_of_weights])
        diff_np = np.abs(layer_weights - other_np)
        indices = np.argpartition(diff_np, kth=beta_closest - 1, axis=0)
        closest = np.take_along_axis(other_np, indices=indices, axis=0)[:beta_closest]
        aggregated_weights.append(np.mean(closest, axis=0))
    return aggregated_weights


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
