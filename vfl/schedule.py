"""The split trainer's seeded schedules (``party.schedule``): both parties derive the
validation split, every epoch's mini-batches and the gradient noise from the shared
seed, so no row order is ever exchanged."""

from __future__ import annotations

import numpy as np

from party.schedule import epoch_batches as _epoch_batches
from party.schedule import split_rows
from vfl.config import TrainConfig


def epoch_batches(train: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """This epoch's shuffled mini-batches of the training rows, from the shared seed."""
    return _epoch_batches(train, batch_size, seed, epoch, stream=2)


def grad_noise(cfg: TrainConfig, epoch: int, step: int, p: int, shape: tuple[int, ...]) -> np.ndarray:
    """The label-leakage defence's noise for passive party ``p`` at (epoch, step)."""
    rng = np.random.default_rng([cfg.seed, 3, epoch, step, p])
    return rng.normal(0.0, cfg.grad_noise / shape[0], size=shape)


__all__ = ["epoch_batches", "grad_noise", "split_rows"]
