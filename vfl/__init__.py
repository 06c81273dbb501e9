"""Vertical federated learning: PSI alignment (vfl.align), CKKS interactive layer (vfl.he),
split training (vfl.trainer).

Imports are lazy so that ``python -m vfl.align`` does not load torch or TenSEAL.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ActiveTrainer": "vfl.trainer",
    "PassiveTrainer": "vfl.trainer",
    "TrainConfig": "vfl.trainer",
    "TrainResult": "vfl.trainer",
    "TrainingInterrupted": "vfl.trainer",
    "ActiveHead": "vfl.split",
    "default_active": "vfl.split",
    "default_passive": "vfl.split",
    "binary_metrics": "vfl.split",
    "CkksParams": "vfl.he.context",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vfl' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
