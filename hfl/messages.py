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


@wire("hfl.app_message", version=1)
@dataclass(frozen=True)
class AppMessage:
    """A Message-API message (``hfl.common.Message``) between a ServerApp and a ClientApp.

    ``records`` maps each record's name to ``["arrays", {key: ndarray}]``,
    ``["metrics", {key: value}]`` or ``["config", {key: value}]``; arrays travel as the
    codec's numpy arrays (never pickle). A reply carrying an error has ``error_code`` != 0.
    """

    message_type: str
    records: dict[str, Any] = field(default_factory=dict)
    group_id: str = ""
    error_code: int = 0
    error_reason: str = ""

    def __post_init__(self) -> None:
        for name, rec in self.records.items():
            if not (isinstance(rec, list) and len(rec) == 2 and rec[0] in ("arrays", "metrics", "config")
                    and isinstance(rec[1], dict)):
                raise ValueError(f"AppMessage record {name!r} is not [kind, dict]")
            if rec[0] == "arrays":
                _check_arrays(list(rec[1].values()), f"AppMessage record {name!r}")


def to_app_message(msg: Any) -> AppMessage:
    """An :class:`hfl.common.Message` as its wire form."""
    from hfl.common.record import ArrayRecord, MetricRecord

    if msg.has_error():
        return AppMessage(msg.metadata.message_type, {}, msg.metadata.group_id,
                          int(msg.error.code) or 1, str(msg.error.reason or ""))
    records: dict[str, Any] = {}
    for name, rec in msg.content.items():
        if isinstance(rec, ArrayRecord):
            records[name] = ["arrays", {k: a.numpy() for k, a in rec.items()}]
        elif isinstance(rec, MetricRecord):
            records[name] = ["metrics", dict(rec)]
        else:
            records[name] = ["config", dict(rec)]
    return AppMessage(msg.metadata.message_type, records, msg.metadata.group_id)


def from_app_message(wire_msg: AppMessage, *, dst_node_id: int = 0, reply_to: Any = None) -> Any:
    """The :class:`hfl.common.Message` an :class:`AppMessage` carries (records checked again)."""
    from hfl.common.message import Error, Message
    from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

    if wire_msg.error_code:
        err = Error(code=wire_msg.error_code, reason=wire_msg.error_reason)
        if reply_to is not None:
            return Message(err, reply_to=reply_to)
        return Message(err, dst_node_id, wire_msg.message_type)
    content = RecordDict()
    for name, (kind, items) in wire_msg.records.items():
        if kind == "arrays":
            content[name] = ArrayRecord({k: Array(np.asarray(v)) for k, v in items.items()})
        elif kind == "metrics":
            content[name] = MetricRecord(dict(items))
        else:
            content[name] = ConfigRecord(dict(items))
    if reply_to is not None:
        return Message(content, reply_to=reply_to)
    return Message(content, dst_node_id, wire_msg.message_type, group_id=wire_msg.group_id)
