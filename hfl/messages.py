"""Wire messages between the HFL server and its clients (all through the safe codec).

Every instruction travels on ``Tag("hfl", <client incarnation>, <seq>, "ins")`` and its
reply on the same tag at step ``"res"``: a client numbers the instructions it
receives, so it always knows the one tag to wait for, and a restarted client (new
incarnation) never reads a reply meant for its previous life.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hfl.common import check_metrics
from party import Tag, wire

PROTOCOL = "hfl"
#: Client -> server, once per connection: the client's incarnation (``Hello``).
HELLO_TAG = Tag(PROTOCOL, "hello")


def _check_arrays(xs: Any, what: str) -> None:
    if not isinstance(xs, list) or not all(isinstance(a, np.ndarray) for a in xs):
        raise ValueError(f"{what}: parameters must be a list of numpy arrays")


@wire("hfl.hello", version=1)
@dataclass(frozen=True)
class Hello:
    """Client -> server on ``Tag("hfl", "hello")``: I am here, under this incarnation id."""

    incarnation: str

    def __post_init__(self) -> None:
        if not isinstance(self.incarnation, str) or not 0 < len(self.incarnation) <= 64:
            raise ValueError("incarnation must be a non-empty str of at most 64 characters")
        if "/" in self.incarnation:
            raise ValueError("incarnation may not contain '/'")


@wire("hfl.get_parameters_ins", version=1)
@dataclass(frozen=True)
class GetParametersIns:
    config: dict[str, Any] = field(default_factory=dict)


@wire("hfl.get_parameters_res", version=1)
@dataclass(frozen=True)
class GetParametersRes:
    parameters: list[Any]

    def __post_init__(self) -> None:
        _check_arrays(self.parameters, "GetParametersRes")


@wire("hfl.fit_ins", version=1)
@dataclass(frozen=True)
class FitIns:
    """Server -> client: train from ``parameters`` with ``config``.

    With ``secagg_session`` set, the client sends its update through secure
    aggregation in that session and its :class:`FitRes` carries no parameters.
    """

    parameters: list[Any]
    config: dict[str, Any] = field(default_factory=dict)
    secagg_session: str = ""
    secagg_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_arrays(self.parameters, "FitIns")


@wire("hfl.fit_res", version=1)
@dataclass(frozen=True)
class FitRes:
    """Client -> server: the locally trained parameters, the examples used, metrics."""

    parameters: list[Any]
    num_examples: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_arrays(self.parameters, "FitRes")
        if not isinstance(self.num_examples, int) or isinstance(self.num_examples, bool):
            raise ValueError(f"FitRes.num_examples must be an int, got {self.num_examples!r}")
        check_metrics(self.metrics, "FitRes")


@wire("hfl.evaluate_ins", version=1)
@dataclass(frozen=True)
class EvaluateIns:
    parameters: list[Any]
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_arrays(self.parameters, "EvaluateIns")


@wire("hfl.evaluate_res", version=1)
@dataclass(frozen=True)
class EvaluateRes:
    loss: float
    num_examples: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.loss, (int, float)) or isinstance(self.loss, bool):
            raise ValueError(f"EvaluateRes.loss must be a number, got {self.loss!r}")
        if not isinstance(self.num_examples, int) or isinstance(self.num_examples, bool):
            raise ValueError(f"EvaluateRes.num_examples must be an int, got {self.num_examples!r}")
        check_metrics(self.metrics, "EvaluateRes")


@wire("hfl.failure", version=1)
@dataclass(frozen=True)
class Failure:
    """Client -> server: the instruction failed on this client (the message says why)."""

    message: str


@wire("hfl.shutdown", version=1)
@dataclass(frozen=True)
class Shutdown:
    """Server -> client: training is over; leave the loop."""

    reason: str = "training finished"


@wire("hfl.get_properties_ins", version=1)
@dataclass(frozen=True)
class GetPropertiesIns:
    config: dict[str, Any] = field(default_factory=dict)


@wire("hfl.get_properties_res", version=1)
@dataclass(frozen=True)
class GetPropertiesRes:
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_metrics(self.properties, "GetPropertiesRes")
