"""Private set intersection (ECDH over ristretto255) for aligning parties' rows.

Public API: :func:`run_psi` (raw IDs), :func:`run_psi_keys` (canonical keys),
:class:`PsiConfig`, :class:`PsiResult`, :class:`NormalizeOptions`,
:func:`normalize_ids`, the sans-I/O :class:`PsiSession`, and the errors
:class:`IdError`, :class:`ConfigMismatch`; :class:`Checkpoint` resumes a killed run. The protocol and its security
argument are in :mod:`psi.protocol`.

Names are imported lazily, so the group worker processes (``python -m
psi._worker``) load only :mod:`psi.ristretto`, not pandas or the party layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psi.checkpoint import Checkpoint, CheckpointMismatch
    from psi.group import GroupEngine, InvalidPoint
    from psi.normalize import (
        IdError,
        NormalizedIds,
        NormalizeOptions,
        NormalizeReport,
        normalize_ids,
    )
    from psi.protocol import ConfigMismatch, PsiConfig, PsiResult, PsiSession
    from psi.runner import run_psi, run_psi_keys

_WHERE = {
    "Checkpoint": "psi.checkpoint",
    "CheckpointMismatch": "psi.checkpoint",
    "GroupEngine": "psi.group",
    "InvalidPoint": "psi.group",
    "IdError": "psi.normalize",
    "NormalizedIds": "psi.normalize",
    "NormalizeOptions": "psi.normalize",
    "NormalizeReport": "psi.normalize",
    "normalize_ids": "psi.normalize",
    "ConfigMismatch": "psi.protocol",
    "PsiConfig": "psi.protocol",
    "PsiResult": "psi.protocol",
    "PsiSession": "psi.protocol",
    "run_psi": "psi.runner",
    "run_psi_keys": "psi.runner",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'psi' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


__all__ = [
    "Checkpoint",
    "CheckpointMismatch",
    "ConfigMismatch",
    "GroupEngine",
    "IdError",
    "InvalidPoint",
    "NormalizeOptions",
    "NormalizeReport",
    "NormalizedIds",
    "PsiConfig",
    "PsiResult",
    "PsiSession",
    "normalize_ids",
    "run_psi",
    "run_psi_keys",
]
