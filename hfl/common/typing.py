"""Flower's legacy message types (``flwr.common.typing``), with Flower's fields and defaults.

These are what a strategy and a ``Client`` see. On the wire tessera sends its own
codec messages (:mod:`hfl.messages`, arrays through the safe codec, never pickle);
the server converts between the two, so ``Parameters.tensors`` holds what Flower's
does: each array as ``np.save`` bytes (``allow_pickle=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

import numpy as np
import numpy.typing as npt

NDArray = npt.NDArray[Any]
NDArrayInt = npt.NDArray[np.int_]
NDArrayFloat = npt.NDArray[np.float64]
NDArrays = list[NDArray]

# The following union types contain Python types corresponding to ProtoBuf types that
# ProtoBuf considers to be "Scalar Value Types", even though some of them arguably do
# not conform to other definitions of what a scalar is (Flower's wording).
Scalar = Union[bool, bytes, float, int, str]  # noqa: UP007 - used at runtime in isinstance
Value = Union[bool, bytes, float, int, str, list[bool], list[bytes], list[float], list[int], list[str]]  # noqa: UP007
MetricScalar = Union[int, float]  # noqa: UP007
MetricScalarList = Union[list[int], list[float]]  # noqa: UP007
MetricRecordValues = Union[MetricScalar, MetricScalarList]  # noqa: UP007
ConfigScalar = Union[int, float, str, bytes, bool]  # noqa: UP007
ConfigScalarList = Union[list[int], list[float], list[str], list[bytes], list[bool]]  # noqa: UP007
ConfigRecordValues = Union[ConfigScalar, ConfigScalarList]  # noqa: UP007
UserConfigValue = Union[bool, float, int, str]  # noqa: UP007
UserConfig = dict[str, UserConfigValue]
Metrics = dict[str, Scalar]
MetricsAggregationFn = Callable[[list[tuple[int, Metrics]]], Metrics]
Config = dict[str, Scalar]
Properties = dict[str, Scalar]


class Code(Enum):
    """Client status codes."""

    OK = 0
    GET_PROPERTIES_NOT_IMPLEMENTED = 1
    GET_PARAMETERS_NOT_IMPLEMENTED = 2
    FIT_NOT_IMPLEMENTED = 3
    EVALUATE_NOT_IMPLEMENTED = 4


@dataclass
class Status:
    """Client status."""

    code: Code
    message: str


@dataclass
class Parameters:
    """Model parameters: one ``bytes`` per array (``ndarray_to_bytes``), as in Flower."""

    tensors: list[bytes] = field(default_factory=list)
    tensor_type: str = "numpy.ndarray"


@dataclass
class GetParametersIns:
    """Parameters request for a client."""

    config: Config


@dataclass
class GetParametersRes:
    """Response when asked to return parameters."""

    status: Status
    parameters: Parameters


@dataclass
class FitIns:
    """Fit instructions for a client."""

    parameters: Parameters
    config: dict[str, Scalar]


@dataclass
class FitRes:
    """Fit response from a client."""

    status: Status
    parameters: Parameters
    num_examples: int
    metrics: dict[str, Scalar]


@dataclass
class EvaluateIns:
    """Evaluate instructions for a client."""

    parameters: Parameters
    config: dict[str, Scalar]


@dataclass
class EvaluateRes:
    """Evaluate response from a client."""

    status: Status
    loss: float
    num_examples: int
    metrics: dict[str, Scalar]


@dataclass
class GetPropertiesIns:
    """Properties request for a client."""

    config: Config


@dataclass
class GetPropertiesRes:
    """Properties response from a client."""

    status: Status
    properties: Properties


@dataclass
class ReconnectIns:
    """ReconnectIns message from server to client."""

    seconds: int | None


@dataclass
class DisconnectRes:
    """DisconnectRes message from client to server."""

    reason: str


OK = Status(Code.OK, "Success")

#: What ``hfl.common`` re-exports under Flower's ``flwr.common`` names.
__all__ = [
    "Code",
    "Config",
    "ConfigRecordValues",
    "DisconnectRes",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "MetricRecordValues",
    "Metrics",
    "MetricsAggregationFn",
    "NDArray",
    "NDArrayFloat",
    "NDArrayInt",
    "NDArrays",
    "Parameters",
    "Properties",
    "ReconnectIns",
    "Scalar",
    "Status",
    "Value",
]
