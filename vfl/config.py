"""What both parties of a split training share: its settings, its result and its error."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from party.errors import ConfigError, TesseraError
from vfl.he.context import CkksParams

#: ``on_event(kind, info)``: "step" / "epoch" progress of a trainer.
EventFn = Callable[[str, dict[str, Any]], None]


class TrainingInterrupted(TesseraError):
    """A peer stopped (on purpose, or did not rejoin within ``rejoin_s``) or stopped answering."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings both parties must share (A sends them; P checks rows, IDs and mode).

    Attributes:
        mode: ``"he"`` (default) or ``"plaintext"``.
        epochs, batch_size: training length and mini-batch rows.
        eval_batch_size: rows per validation/scoring batch (chunked over ciphertexts).
        lr: Adam learning rate of each party's local modules.
        lr_interactive, momentum: SGD(+momentum) on the shared interactive weights W.
        seed: shared seed for the validation split and every epoch's shuffling.
        val_fraction: rows held out for early stopping.
        patience: stop after this many epochs without a better validation AUC.
        checkpoint_dir: per-party directory for epoch checkpoints (None: none).
        grad_noise: label-leakage defence, σ in units of 1/batch_rows (0: off).
        timeout_s: per-message deadline.
        rejoin_s: when a peer's process dies mid-run (no abort: kill -9, a lost
            machine), how long the survivor waits for it to be restarted; it then
            rejoins and resumes from the newest checkpoint both have (from the start
            without one). 0: fail at once. A peer that stops on purpose (bad input,
            Ctrl-C) tells its peers, and they stop at once.
    """

    mode: str = "he"
    epochs: int = 10
    batch_size: int = 1024
    eval_batch_size: int = 4096
    lr: float = 3e-3
    lr_interactive: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 3
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 3
    grad_noise: float = 0.0
    timeout_s: float = 600.0
    rejoin_s: float = 300.0
    session: str = "vfl"
    ckks: CkksParams = field(default_factory=CkksParams)

    def __post_init__(self) -> None:
        if self.mode not in ("he", "plaintext"):
            raise ConfigError(f"mode must be 'he' or 'plaintext', got {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("epochs, batch_size and eval_batch_size must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.grad_noise < 0 or not math.isfinite(self.grad_noise):
            raise ConfigError("grad_noise must be >= 0")
        if self.keep_checkpoints < 2:
            raise ConfigError("keep_checkpoints must be >= 2 (a crash between the parties' "
                              "writes needs the previous epoch)")


@dataclass
class TrainResult:
    """History of one fit (one dict of metrics per epoch) and the epoch restored."""

    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int


__all__ = ["EventFn", "TrainConfig", "TrainResult", "TrainingInterrupted"]
