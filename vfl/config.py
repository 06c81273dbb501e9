"""What both parties of a split training share: its settings, its result and its error."""

from __future__ import annotations

import functools
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
        label_epsilon, label_delta: label DP instead (None: off). The active party
            noises the loss gradient at the logit, ``(p - y)/B + N(0, (z/B)²)``, and
            everything (its own updates and what each passive party receives) follows
            from the noised gradient; ``z`` is the smallest multiplier whose ε after
            ``epochs`` epochs (each label used once per epoch, sensitivity 1/B) is at
            most ``label_epsilon`` at ``label_delta`` (``dp.accounting``, RDP). Only
            the active party uses it; it is never sent.
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
    label_epsilon: float | None = None
    label_delta: float = 1e-5
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
        if self.seed < 0:  # the shared schedules seed numpy with it (and the plan says so)
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.grad_noise < 0 or not math.isfinite(self.grad_noise):
            raise ConfigError("grad_noise must be >= 0")
        if self.label_epsilon is not None:
            if not (self.label_epsilon > 0 and math.isfinite(self.label_epsilon)):
                raise ConfigError(f"label_epsilon must be > 0, got {self.label_epsilon}")
            if not 0 < self.label_delta < 1:
                raise ConfigError(f"label_delta must be in (0, 1), got {self.label_delta}")
            if self.grad_noise > 0:
                raise ConfigError("give grad_noise or label_epsilon, not both")
        if self.keep_checkpoints < 2:
            raise ConfigError("keep_checkpoints must be >= 2 (a crash between the parties' "
                              "writes needs the previous epoch)")


    @functools.cached_property
    def label_noise_multiplier(self) -> float:
        """``z`` of the label-DP gradient noise (0 without ``label_epsilon``)."""
        if self.label_epsilon is None:
            return 0.0
        from dp.accounting import central_noise_for

        return central_noise_for(self.label_epsilon, self.label_delta, self.epochs, 1.0)


@dataclass
class TrainResult:
    """History of one fit (one dict of metrics per epoch) and the epoch restored."""

    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int


__all__ = ["EventFn", "TrainConfig", "TrainResult", "TrainingInterrupted"]
