"""Wire messages of vertical SecureBoost (``@wire`` dataclasses; never pickled).

Active → passive: :class:`BoostPlan`, :class:`TreeStart`, :class:`NodeRequest`,
:class:`SplitRequest`, :class:`TreeEnd`, :class:`Finish`, :class:`PredictRequest`,
:class:`ExportRequest`. Passive → active: :class:`PlanAck`, :class:`Histograms`,
:class:`SplitResult`, :class:`Ack`, :class:`PredictBits`, :class:`ExportTable`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from party import wire
from party.errors import RemoteProtocolError


@wire("boost.plan", version=1)
@dataclass(frozen=True)
class BoostPlan:
    """What will be trained: the parameters, the HE scheme and public key, the row count."""

    params: dict[str, Any]
    scheme: str
    public_key: bytes
    rows: int
    passives: list[str]
    resume_tree: int = 0  # trees [0, resume_tree) are kept from the checkpoints


@wire("boost.plan_ack", version=1)
@dataclass(frozen=True)
class PlanAck:
    rows: int
    done_trees: int  # complete trees in this party's checkpoint
    error: str = ""


@wire("boost.tree_start", version=1)
@dataclass(frozen=True)
class TreeStart:
    """Tree ``tree`` begins; ``rows`` are the (sub)sampled rows, ``gh`` their packed, encrypted
    (g, h) in that order; empty when this passive party takes no part in the tree."""

    tree: int
    rows: np.ndarray  # int64 row indices
    gh: bytes
    shift: int
    active_layers_from: int  # depth from which only the active party's features compete


@wire("boost.node_request", version=1)
@dataclass(frozen=True)
class NodeRequest:
    """The rows of the open nodes of one layer: ``position[i]`` is the node of ``TreeStart.rows[i]``
    (-1: in no open node). ``pairs`` lists (parent, left, right) so siblings share one histogram."""

    tree: int
    depth: int
    nodes: list[int]
    position: np.ndarray  # int32, len(TreeStart.rows)
    pairs: list[list[int]] = field(default_factory=list)


@wire("boost.histograms", version=1)
@dataclass(frozen=True)
class Histograms:
    """Per open node: encrypted packed (ΣG, ΣH) of the rows left of each candidate split,
    candidates in a random order chosen by the passive party (``b""``: no candidate)."""

    tree: int
    nodes: list[int]
    sums: list[bytes]
    counts: list[int]  # candidates per node


@wire("boost.split_request", version=1)
@dataclass(frozen=True)
class SplitRequest:
    """The active party picked candidate ``candidates[i]`` of this party at ``nodes[i]``."""

    tree: int
    nodes: list[int]
    candidates: list[int]


@wire("boost.split_result", version=1)
@dataclass(frozen=True)
class SplitResult:
    """For each requested split: the lookup-table record id the owner stored, and which of the
    node's rows (in ``TreeStart.rows`` order) go left."""

    tree: int
    records: list[int]
    left: list[np.ndarray]  # bool, one per split


@wire("boost.tree_end", version=1)
@dataclass(frozen=True)
class TreeEnd:
    tree: int
    used_records: list[int]  # this party's records the finished tree uses (others are dropped)


@wire("boost.finish", version=1)
@dataclass(frozen=True)
class Finish:
    run_id: str
    record_gain: dict[str, float]  # this party's record id (as str) -> total gain, for importance
    record_count: dict[str, int]


@wire("boost.ack", version=1)
@dataclass(frozen=True)
class Ack:
    step: str
    error: str = ""


@wire("boost.predict_request", version=1)
@dataclass(frozen=True)
class PredictRequest:
    """Score ``rows`` rows (the scoring table is aligned at both parties); bits for ``records``."""

    run_id: str
    rows: int
    records: list[int]


@wire("boost.predict_bits", version=1)
@dataclass(frozen=True)
class PredictBits:
    """``np.packbits`` of (records × rows) "goes left" bits."""

    records: list[int]
    bits: np.ndarray  # uint8
    error: str = ""


@wire("boost.export_request", version=1)
@dataclass(frozen=True)
class ExportRequest:
    run_id: str
    consent: bool  # the active party's own explicit consent


@wire("boost.export_table", version=1)
@dataclass(frozen=True)
class ExportTable:
    """Only sent when this party consented: record id -> (feature name, threshold, kind)."""

    records: list[int]
    features: list[str]
    thresholds: list[float]
    error: str = ""
    all_features: list[str] = field(default_factory=list)  # this party's columns, in order


def dispatch(msg: Any, handlers: Mapping[type, Callable[[Any], Any]]) -> Any:
    """The reply of the handler for ``msg``'s type (the first of ``handlers`` it is an instance
    of); a message of no listed type is a :class:`RemoteProtocolError`."""
    for kind, handler in handlers.items():
        if isinstance(msg, kind):
            return handler(msg)
    raise RemoteProtocolError(f"unexpected message {type(msg).__name__}")
