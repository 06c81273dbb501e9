"""Types shared by clients, strategies and the server, under Flower's ``flwr.common`` names.

The legacy API's types (:mod:`hfl.common.typing`), the array <-> bytes helpers
(:mod:`hfl.common.parameter`, no pickle) and the Message API's records and
messages (:mod:`hfl.common.record`, :mod:`hfl.common.message`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from hfl.common import record, typing
from hfl.common.message import DEFAULT_TTL, Context, Error, Message, MessageType, Metadata
from hfl.common.parameter import (
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from hfl.common.typing import *  # noqa: F403 - Flower's names, listed once in typing.__all__
from hfl.common.typing import Metrics, NDArray
from party import ConfigError

#: Flower's deprecated record names (the same classes).
ConfigsRecord = ConfigRecord
MetricsRecord = MetricRecord
ParametersRecord = ArrayRecord
RecordSet = RecordDict

_logger = logging.getLogger("hfl")


def log(level: int, msg: object, *args: object, **kwargs: object) -> None:
    """Flower's ``log(level, msg, *args)``: a record on the ``hfl`` logger."""
    _logger.log(level, msg, *args, **kwargs)  # type: ignore[arg-type]


def now() -> datetime:
    """The current time in UTC (Flower's ``now``)."""
    return datetime.now(tz=timezone.utc)


def array_from_numpy(ndarray: NDArray) -> Array:
    """An :class:`Array` from a NumPy array (Flower's deprecated helper)."""
    return Array(ndarray)

_SCALARS = (bool, bytes, float, int, str)


#: Flower arguments tessera replaces with the federation file (mutual TLS always).
_FLOWER_TLS_KWARGS = ("root_certificates", "certificates", "transport", "authentication_keys",
                      "grpc_max_message_length", "ssl_certfile", "ssl_keyfile", "ssl_ca_certfile")


def refuse_flower_kwargs(fn: str, kwargs: dict[str, Any]) -> None:
    """A Flower argument tessera does not take is a ConfigError naming it, never ignored."""
    if not kwargs:
        return
    names = ", ".join(sorted(kwargs))
    tls = [k for k in kwargs if k in _FLOWER_TLS_KWARGS]
    why = (" tessera always uses mutual TLS with the certificates named in the federation file "
           "(federation=...)" if tls else "")
    raise ConfigError(f"{fn}() does not take {names}.{why}")


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
    "DEFAULT_TTL",
    "ConfigsRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricsRecord",
    "ParametersRecord",
    "RecordSet",
    "array_from_numpy",
    "bytes_to_ndarray",
    "check_metrics",
    "describe_mismatch",
    "finite_or_none",
    "log",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "now",
    "parameters_to_ndarrays",
    "refuse_flower_kwargs",
]
__all__ += record.__all__
__all__ += typing.__all__
