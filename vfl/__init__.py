"""Vertical federated learning: PSI alignment (vfl.align), CKKS interactive layer (vfl.he),
split training (vfl.trainer).

Where things are: settings and errors ``vfl.config``; the session handshake (a sans-I/O
machine per role) ``vfl.session``; the interactive layer behind one interface for both
modes ``vfl.interactive`` (a new mode is a new pair of classes there); seeded schedules
``vfl.schedule``; checkpoints ``vfl.checkpoints``; the saved-half format
``vfl.model_file``; the runners ``vfl.active`` and ``vfl.passive`` over ``vfl.runner``,
public as ``vfl.trainer``; models and metrics ``vfl.split``.

The exports load on first use, so that ``python -m vfl.align`` does not load torch or
TenSEAL; the ``TYPE_CHECKING`` imports give type checkers the same names and types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vfl.config import TrainConfig, TrainingInterrupted, TrainResult
    from vfl.he.context import CkksParams
    from vfl.split import ActiveHead, binary_metrics, default_active, default_passive
    from vfl.trainer import ActiveTrainer, PassiveTrainer

_LAZY = {
    "ActiveTrainer": "vfl.trainer",
    "PassiveTrainer": "vfl.trainer",
    "TrainConfig": "vfl.config",
    "TrainResult": "vfl.config",
    "TrainingInterrupted": "vfl.config",
    "ActiveHead": "vfl.split",
    "default_active": "vfl.split",
    "default_passive": "vfl.split",
    "binary_metrics": "vfl.split",
    "CkksParams": "vfl.he.context",
}

__all__ = [
    "ActiveHead",
    "ActiveTrainer",
    "CkksParams",
    "PassiveTrainer",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "binary_metrics",
    "default_active",
    "default_passive",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vfl' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
