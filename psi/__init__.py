"""Private set intersection for aligning parties' rows: ECDH over ristretto255, or RR22/KKRT.

Public API: :func:`run_psi` (raw IDs), :func:`run_psi_keys` (canonical keys),
:class:`PsiConfig` (``protocol`` ``"ecdh"``/``"rr22"``/``"kkrt"``, ``join``
``"inner"``/``"left"``/``"right"``/``"full"``/``"difference"``), :class:`PsiResult`,
:class:`NormalizeOptions`, :func:`normalize_ids`, the sans-I/O :class:`PsiSession`,
:class:`SpuLink` (the rr22/kkrt link), and the errors :class:`IdError`,
:class:`ConfigMismatch`, :class:`SpuUnavailable`; :class:`Checkpoint` resumes a killed
run. The ECDH protocol and its security argument are in :mod:`psi.protocol`; RR22/KKRT
through spu, why spu, and what each party learns per protocol in :mod:`psi.spu`; the
join layouts and what they reveal in :mod:`psi.join`; the one pipeline all protocols
share in :mod:`psi.runner`; aligning tables (files in, aligned files out; ``python -m
vfl.align``) in :mod:`psi.align`; the unbalanced mode (``mode="unbalanced"``: a large
party's offline cache, then short online queries; ECDH-OPRF) in :mod:`psi.unbalanced`;
bounded memory for very large files (stream, bucket on disk, one rr22 run per bucket)
in :mod:`psi.buckets`.

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
    from psi.spu import SpuLink, SpuUnavailable

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
    "SpuLink": "psi.spu",
    "SpuUnavailable": "psi.spu",
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
    "SpuLink",
    "SpuUnavailable",
    "normalize_ids",
    "run_psi",
    "run_psi_keys",
]
