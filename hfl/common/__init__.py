"""Types shared by clients, strategies and the server, under Flower's ``flwr.common`` names.

The legacy API's types (:mod:`hfl.common.typing`), the array <-> bytes helpers
(:mod:`hfl.common.parameter`, no pickle) and the Message API's records and
messages (:mod:`hfl.common.record`, :mod:`hfl.common.message`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hfl.common.message import Context, Error, Message, MessageType, Metadata
from hfl.common.parameter import (
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from hfl.common.typing import (
    Code,
    Config,
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Metrics,
    MetricsAggregationFn,
    NDArray,
    NDArrays,
    Parameters,
    Properties,
    ReconnectIns,
    Scalar,
    Status,
)

_SCALARS = (bool, bytes, float, int, str)


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


__all__ = [
    "Array",
    "ArrayRecord",
    "Code",
    "Config",
    "ConfigRecord",
    "Context",
    "DisconnectRes",
    "Error",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "Metrics",
    "MetricsAggregationFn",
    "NDArray",
    "NDArrays",
    "Parameters",
    "Properties",
    "ReconnectIns",
    "RecordDict",
    "Scalar",
    "Status",
    "bytes_to_ndarray",
    "check_metrics",
    "describe_mismatch",
    "finite_or_none",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]
