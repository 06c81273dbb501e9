"""Wire messages of vertical SecureBoost (``@wire`` dataclasses; never pickled).

Active → passive: :class:`BoostPlan`, :class:`TreeStart`, :class:`NodeRequest`,
:class:`SplitRequest`, :class:`TreeEnd`, :class:`Finish`, :class:`PredictRequest`,
:class:`ExportRequest`. Passive → active: :class:`PlanAck`, :class:`Histograms`,
:class:`SplitResult`, :class:`Ack`, :class:`PredictBits`, :class:`ExportTable`.

Scalar, string, byte and list fields have codec types (``party.codec``), checked on
decode: a malformed one is a ``CodecError`` naming the field. Arrays and the relations
between fields (row counts, node and record ids) are checked by the receiving machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from party import wire
from party.codec import (
    Blob,
    Bytes,
    Flag,
    Float,
    Int,
    ListOf,
    Names,
    NonNegInt,
    NonNegInts,
    Record,
    Str,
    StrictInt,
    Text,
)
from party.errors import RemoteProtocolError

#: Column names (any string; checked against the party's own columns where it matters).
Texts = Annotated[list[str], ListOf(Str())]
#: Thresholds, gains, IVs (an infinite one is a value, not a malformed message).
Floats = Annotated[list[float], ListOf(Float(finite=False))]


@wire("boost.plan", version=1)
@dataclass(frozen=True)
class BoostPlan:
    """What will be trained: the parameters, the HE scheme and public key, the row count."""

    params: Record
    scheme: Text
    public_key: Blob
    rows: NonNegInt
    passives: Names
    resume_tree: NonNegInt = 0  # trees [0, resume_tree) are kept from the checkpoints


@wire("boost.plan_ack", version=1)
@dataclass(frozen=True)
class PlanAck:
    rows: NonNegInt
    done_trees: NonNegInt  # complete trees in this party's checkpoint
    error: Text = ""


@wire("boost.tree_start", version=1)
@dataclass(frozen=True)
class TreeStart:
    """Tree ``tree`` begins; ``rows`` are the (sub)sampled rows, ``gh`` their packed, encrypted
    (g, h) in that order; empty when this passive party takes no part in the tree."""

    tree: NonNegInt
    rows: np.ndarray  # int64 row indices
    gh: Blob
    shift: StrictInt
    active_layers_from: StrictInt  # depth from which only the active party's features compete


@wire("boost.node_request", version=1)
@dataclass(frozen=True)
class NodeRequest:
    """The rows of the open nodes of one layer: ``position[i]`` is the node of ``TreeStart.rows[i]``
    (-1: in no open node). ``pairs`` lists (parent, left, right) so siblings share one histogram."""

    tree: NonNegInt
    depth: NonNegInt
    nodes: NonNegInts
    position: np.ndarray  # int32, len(TreeStart.rows)
    pairs: Annotated[list[list[int]], ListOf(ListOf(Int(min=0)))] = field(default_factory=list)


@wire("boost.histograms", version=1)
@dataclass(frozen=True)
class Histograms:
    """Per open node: encrypted packed (ΣG, ΣH) of the rows left of each candidate split,
    candidates in a random order chosen by the passive party (``b""``: no candidate)."""

    tree: NonNegInt
    nodes: NonNegInts
    sums: Annotated[list[bytes], ListOf(Bytes())]
    counts: NonNegInts  # candidates per node


@wire("boost.split_request", version=1)
@dataclass(frozen=True)
class SplitRequest:
    """The active party picked candidate ``candidates[i]`` of this party at ``nodes[i]``."""

    tree: NonNegInt
    nodes: NonNegInts
    candidates: NonNegInts


@wire("boost.split_result", version=1)
@dataclass(frozen=True)
class SplitResult:
    """For each requested split: the lookup-table record id the owner stored, and which of the
    node's rows (in ``TreeStart.rows`` order) go left."""

    tree: NonNegInt
    records: NonNegInts
    left: list[np.ndarray]  # bool, one per split


@wire("boost.tree_end", version=1)
@dataclass(frozen=True)
class TreeEnd:
    tree: NonNegInt
    used_records: NonNegInts  # this party's records the finished tree uses (others are dropped)


@wire("boost.finish", version=1)
@dataclass(frozen=True)
class Finish:
    run_id: Text
    record_gain: Record  # this party's record id (as str) -> total gain, for importance
    record_count: Record


@wire("boost.ack", version=1)
@dataclass(frozen=True)
class Ack:
    step: Text
    error: Text = ""


@wire("boost.predict_request", version=1)
@dataclass(frozen=True)
class PredictRequest:
    """Score ``rows`` rows (the scoring table is aligned at both parties); bits for ``records``."""

    run_id: Text
    rows: NonNegInt
    records: NonNegInts


@wire("boost.predict_bits", version=1)
@dataclass(frozen=True)
class PredictBits:
    """``np.packbits`` of (records × rows) "goes left" bits."""

    records: NonNegInts
    bits: np.ndarray  # uint8
    error: Text = ""


@wire("boost.export_request", version=1)
@dataclass(frozen=True)
class ExportRequest:
    run_id: Text
    consent: Flag  # the active party's own explicit consent


@wire("boost.export_table", version=1)
@dataclass(frozen=True)
class ExportTable:
    """Only sent when this party consented: record id -> (feature name, threshold, kind)."""

    records: NonNegInts
    features: Texts
    thresholds: Floats
    error: Text = ""
    all_features: Texts = field(default_factory=list)  # this party's columns, in order


def dispatch(msg: Any, handlers: Mapping[type, Callable[[Any], Any]]) -> Any:
    """The reply of the handler for ``msg``'s type (the first of ``handlers`` it is an instance
    of); a message of no listed type is a :class:`RemoteProtocolError`."""
    for kind, handler in handlers.items():
        if isinstance(msg, kind):
            return handler(msg)
    raise RemoteProtocolError(f"unexpected message {type(msg).__name__}")
