"""Types shared by clients, strategies and the server (Flower's ``flwr.common`` names)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import numpy.typing as npt

NDArray = npt.NDArray[np.generic]
NDArrays = list[NDArray]
Scalar = Union[bool, bytes, float, int, str]  # noqa: UP007 - used at runtime in isinstance
Metrics = dict[str, Scalar]
Config = dict[str, Scalar]
MetricsAggregationFn = "Callable[[list[tuple[int, Metrics]]], Metrics]"

_SCALARS = (bool, bytes, float, int, str)


@dataclass
class Parameters:
    """Model parameters as a list of NumPy arrays (Flower's ``Parameters`` holds bytes)."""

    tensors: NDArrays = field(default_factory=list)
    tensor_type: str = "numpy.ndarray"


def ndarrays_to_parameters(ndarrays: Sequence[NDArray]) -> Parameters:
    """Wrap arrays (kept for Flower compatibility; tessera passes arrays directly)."""
    return Parameters([np.asarray(a) for a in ndarrays])


def parameters_to_ndarrays(parameters: Parameters | Sequence[NDArray]) -> NDArrays:
    """Unwrap :class:`Parameters` (a list of arrays is returned as is)."""
    if isinstance(parameters, Parameters):
        return list(parameters.tensors)
    return [np.asarray(a) for a in parameters]


def check_metrics(metrics: object, what: str) -> Metrics:
    """Metrics must be a dict of str -> scalar; raises ValueError naming the bad key."""
    if not isinstance(metrics, dict):
        raise ValueError(f"{what}: metrics must be a dict, got {type(metrics).__name__}")
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise ValueError(f"{what}: metric key {k!r} is not a str")
        if isinstance(v, np.generic):
            v = v.item()
            metrics[k] = v
        if not isinstance(v, _SCALARS):
            raise ValueError(f"{what}: metric {k!r} has type {type(v).__name__}, not a scalar")
    return metrics


def describe_mismatch(ref: Sequence[NDArray], got: Sequence[NDArray]) -> str | None:
    """Why ``got`` cannot replace ``ref`` (count, shape, dtype kind, non-finite); None if it can."""
    if len(got) != len(ref):
        return f"returned {len(got)} arrays, the model has {len(ref)}"
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        if not isinstance(g, np.ndarray):
            return f"array {i} is a {type(g).__name__}, not a numpy array"
        if g.shape != r.shape:
            return f"array {i} has shape {g.shape}, the model's is {r.shape}"
        if g.dtype.kind not in "biuf":
            return f"array {i} has dtype {g.dtype}, not a real number type"
        if g.dtype.kind == "f" and not np.isfinite(g).all():
            bad = int((~np.isfinite(g)).sum())
            return f"array {i} (shape {g.shape}) has {bad} NaN/inf values"
    return None


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
