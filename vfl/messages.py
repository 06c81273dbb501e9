"""Control messages of the split trainer (the HE step messages are in vfl.he.messages)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from party import wire


@wire("vfl.train_plan", version=1)
@dataclass(frozen=True)
class TrainPlan:
    """A -> P: what will be trained. P checks rows, ID digest and mode against its own."""

    mode: str
    rows: int
    id_digest: str
    batch_size: int
    epochs: int
    seed: int
    val_fraction: float
    k: int
    lr_interactive: float  # SGD on the shared W: both shares must take the same step
    momentum: float
    checkpoints: list[int]  # epochs A can resume from

    def __post_init__(self) -> None:
        if self.mode not in ("he", "plaintext"):
            raise ValueError(f"unknown mode {self.mode!r}")
        if self.rows < 1 or self.batch_size < 1 or self.k < 1:
            raise ValueError("rows, batch_size and k must be positive")


@wire("vfl.plan_ack", version=1)
@dataclass(frozen=True)
class PlanAck:
    """P -> A: accepted; P's output width d, its resumable epochs; W_init in plaintext mode."""

    d: int
    checkpoints: list[int]
    w_init: np.ndarray  # (d, k) in plaintext mode only; (0, 0) in HE mode
    error: str  # non-empty: P refuses the plan (rows, IDs or mode differ)


@wire("vfl.epoch_cmd", version=2)
@dataclass(frozen=True)
class EpochCommand:
    """A -> P: ``train`` epoch, or ``resume`` from epoch (then train on), or ``stop``.

    ``run_id`` (``stop`` only): a fresh random ID naming the trained model; both parties
    store it with their half (``save_model``) so that halves of different runs are never
    paired when scoring later (``load_model``).
    """

    action: str
    epoch: int
    best_epoch: int
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.action not in ("train", "resume", "stop"):
            raise ValueError(f"unknown action {self.action!r}")


@wire("vfl.epoch_end", version=1)
@dataclass(frozen=True)
class EpochEnd:
    """A -> P after validation: checkpoint this epoch; ``best_epoch`` is the best so far."""

    epoch: int
    best_epoch: int


@wire("vfl.ack", version=1)
@dataclass(frozen=True)
class Ack:
    """P -> A: done (e.g. checkpoint written)."""

    epoch: int


@wire("vfl.score_request", version=1)
@dataclass(frozen=True)
class ScoreRequest:
    """A -> P: score ``rows`` aligned rows (P checks its own row count and ID digest)."""

    rows: int
    id_digest: str
    batch_size: int


@wire("vfl.score_hello", version=1)
@dataclass(frozen=True)
class ScoreHello:
    """A -> P, first message of a scoring session of *loaded* model halves.

    P checks that ``run_id`` (the model's random ID from the ``stop`` command), the
    mode and the interactive width ``k`` equal those saved with its own half.
    """

    run_id: str
    mode: str
    k: int


@wire("vfl.score_hello_ack", version=1)
@dataclass(frozen=True)
class ScoreHelloAck:
    """P -> A: P's model ID and output width ``d``; ``error`` non-empty: P refuses."""

    run_id: str
    d: int
    error: str
