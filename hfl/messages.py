"""Wire messages between the HFL server and its clients (all through the safe codec).

Every instruction travels on ``Tag("hfl", <client incarnation>, <seq>, "ins")`` and its
reply on the same tag at step ``"res"``: a client numbers the instructions it
receives, so it always knows the one tag to wait for, and a restarted client (new
incarnation) never reads a reply meant for its previous life.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from hfl.common import check_metrics
from party import Tag, wire
from party.codec import Check, Checked, Float, Int, ListOf, Str

PROTOCOL = "hfl"
#: Client -> server, once per connection: the client's incarnation (``Hello``).
HELLO_TAG = Tag(PROTOCOL, "hello")


@dataclass(frozen=True)
class _NdArray(Check):
    """A numpy array (of any dtype the codec carries)."""

    def problem(self, v: Any, fields: Any) -> str | None:
        return None if isinstance(v, np.ndarray) else f"must be a numpy array, got {type(v).__name__}"


@dataclass(frozen=True)
class _Metrics(Check):
    """``str`` -> scalar (``hfl.common.check_metrics``; NumPy scalars become Python ones)."""

    def problem(self, v: Any, fields: Any) -> str | None:
        try:
            check_metrics(v, "metrics")
        except ValueError as e:
            return str(e)
        return None


#: The model: a list of numpy arrays.
Arrays = Annotated[list[np.ndarray], ListOf(_NdArray())]
#: Reported metrics or properties: str -> scalar.
Metrics = Annotated[dict[str, Any], _Metrics()]
#: An example count; <= 0 is a valid message that the server rejects with its reason.
Count = Annotated[int, Int()]
#: A loss; a non-finite one is a valid message that the server rejects with its reason.
Loss = Annotated[float, Float(finite=False)]


@dataclass(frozen=True)
class _Records(Check):
    """``AppMessage.records``: name -> ``[kind, dict]``, ``kind`` "arrays" (numpy arrays),
    "metrics" or "config"."""

    def problem(self, v: Any, fields: Any) -> str | None:
        if not isinstance(v, dict):
            return f"must be a dict, got {type(v).__name__}"
        for name, rec in v.items():
            if not (isinstance(rec, list) and len(rec) == 2 and rec[0] in ("arrays", "metrics", "config")
                    and isinstance(rec[1], dict)):
                return f"record {name!r} is not [kind, dict]"
            if rec[0] == "arrays" and not all(isinstance(a, np.ndarray) for a in rec[1].values()):
                return f"record {name!r}: its arrays must be numpy arrays"
        return None


@wire("hfl.hello", version=1)
@dataclass(frozen=True)
class Hello(Checked):
    """Client -> server on ``Tag("hfl", "hello")``: I am here, under this incarnation id."""

    incarnation: Annotated[str, Str(nonempty=True, max_len=64, forbid="/")]  # a tag component


@wire("hfl.get_parameters_ins", version=1)
@dataclass(frozen=True)
class GetParametersIns:
    config: dict[str, Any] = field(default_factory=dict)


@wire("hfl.get_parameters_res", version=1)
@dataclass(frozen=True)
class GetParametersRes(Checked):
    parameters: Arrays


@dataclass(frozen=True)
class Instruction(Checked):
    """What a fit or evaluate instruction starts with: the model and the round's config."""

    parameters: Arrays
    config: dict[str, Any] = field(default_factory=dict)


@wire("hfl.fit_ins", version=1)
@dataclass(frozen=True)
class FitIns(Instruction):
    """Server -> client: train from ``parameters`` with ``config``.

    With ``secagg_session`` set, the client sends its update through secure
    aggregation in that session and its :class:`FitRes` carries no parameters.
    """

    secagg_session: str = ""
    secagg_params: dict[str, Any] = field(default_factory=dict)


@wire("hfl.fit_res", version=1)
@dataclass(frozen=True)
class FitRes(Checked):
    """Client -> server: the locally trained parameters, the examples used, metrics."""

    parameters: Arrays
    num_examples: Count
    metrics: Metrics = field(default_factory=dict)


@wire("hfl.evaluate_ins", version=1)
@dataclass(frozen=True)
class EvaluateIns(Instruction):
    """Server -> client: evaluate ``parameters`` with ``config``."""


@wire("hfl.evaluate_res", version=1)
@dataclass(frozen=True)
class EvaluateRes(Checked):
    loss: Loss
    num_examples: Count
    metrics: Metrics = field(default_factory=dict)


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
class GetPropertiesRes(Checked):
    properties: Metrics = field(default_factory=dict)


@wire("hfl.app_message", version=1)
@dataclass(frozen=True)
class AppMessage(Checked):
    """A Message-API message (``hfl.common.Message``) between a ServerApp and a ClientApp.

    ``records`` maps each record's name to ``["arrays", {key: ndarray}]``,
    ``["metrics", {key: value}]`` or ``["config", {key: value}]``; arrays travel as the
    codec's numpy arrays (never pickle). A reply carrying an error has ``error_code`` != 0.
    """

    message_type: str
    records: Annotated[dict[str, Any], _Records()] = field(default_factory=dict)
    group_id: str = ""
    error_code: int = 0
    error_reason: str = ""


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
