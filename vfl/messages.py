"""Control messages of the split trainer (the HE step messages are in vfl.he.messages).

Every field has a codec type (``party.codec``), checked when a message is decoded:
a malformed control message is a ``CodecError`` naming the field, never a value the
session machine (``vfl.session``) has to doubt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from party import wire
from party.codec import (
    Array,
    FiniteFloat,
    Flag,
    Int,
    NonNegInt,
    NonNegInts,
    PosInt,
    Str,
    Text,
)

MODES = ("he", "plaintext")
Mode = Annotated[str, Str(one_of=MODES)]
#: An epoch number, or -1 for "none" (no checkpoint to resume from, no best epoch yet).
EpochOrNone = Annotated[int, Int(min=-1)]


@wire("vfl.train_plan", version=1)
@dataclass(frozen=True)
class TrainPlan:
    """A -> P: what will be trained. P checks rows, ID digest and mode against its own."""

    mode: Mode
    rows: PosInt
    id_digest: Text
    batch_size: PosInt
    epochs: PosInt
    seed: NonNegInt
    val_fraction: FiniteFloat
    k: PosInt
    lr_interactive: FiniteFloat  # SGD on the shared W: both shares must take the same step
    momentum: FiniteFloat
    checkpoints: NonNegInts  # epochs A can resume from


@wire("vfl.plan_ack", version=1)
@dataclass(frozen=True)
class PlanAck:
    """P -> A: accepted; P's output width d, its resumable epochs; W_init in plaintext mode."""

    d: NonNegInt
    checkpoints: NonNegInts
    w_init: Annotated[np.ndarray, Array((np.float64,), ndim=2, finite=True)]  # (d, k) or (0, 0)
    error: Text  # non-empty: P refuses the plan (rows, IDs or mode differ)


@wire("vfl.epoch_cmd", version=2)
@dataclass(frozen=True)
class EpochCommand:
    """A -> P: ``train`` epoch, or ``resume`` from epoch (then train on), or ``stop``.

    ``run_id`` (``stop`` only): a fresh random ID naming the trained model; both parties
    store it with their half (``save_model``) so that halves of different runs are never
    paired when scoring later (``load_model``).
    """

    action: Annotated[str, Str(one_of=("train", "resume", "stop"))]
    epoch: EpochOrNone
    best_epoch: EpochOrNone
    run_id: Text = ""


@wire("vfl.epoch_end", version=1)
@dataclass(frozen=True)
class EpochEnd:
    """A -> P after validation: checkpoint this epoch; ``best_epoch`` is the best so far."""

    epoch: NonNegInt
    best_epoch: EpochOrNone


@wire("vfl.ack", version=1)
@dataclass(frozen=True)
class Ack:
    """P -> A: epoch ``epoch`` is done (its checkpoint written)."""

    epoch: NonNegInt


@wire("vfl.score_request", version=1)
@dataclass(frozen=True)
class ScoreRequest:
    """A -> P: score ``rows`` aligned rows (P checks its own row count and ID digest)."""

    rows: PosInt
    id_digest: Text
    batch_size: PosInt


@wire("vfl.score_ready", version=1)
@dataclass(frozen=True)
class ScoreReady:
    """P -> A: ``ok``: P holds the same rows and serves the batches; else ``error`` says why."""

    ok: Flag
    error: Text


@wire("vfl.score_hello", version=1)
@dataclass(frozen=True)
class ScoreHello:
    """A -> P, first message of a scoring session of *loaded* model halves.

    P checks that ``run_id`` (the model's random ID from the ``stop`` command), the
    mode and the interactive width ``k`` equal those saved with its own half.
    """

    run_id: Text
    mode: Mode
    k: PosInt


@wire("vfl.score_hello_ack", version=1)
@dataclass(frozen=True)
class ScoreHelloAck:
    """P -> A: P's model ID and output width ``d``; ``error`` non-empty: P refuses."""

    run_id: Text
    d: NonNegInt
    error: Text


__all__ = [
    "MODES",
    "Ack",
    "EpochCommand",
    "EpochEnd",
    "PlanAck",
    "ScoreHello",
    "ScoreHelloAck",
    "ScoreReady",
    "ScoreRequest",
    "TrainPlan",
]
