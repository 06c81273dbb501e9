"""Private set intersection (ECDH over ristretto255) for aligning parties' rows.

Public API: :func:`run_psi` (raw IDs), :func:`run_psi_keys` (canonical keys),
:class:`PsiConfig`, :class:`PsiResult`, :class:`NormalizeOptions`,
:func:`normalize_ids`, the sans-I/O :class:`PsiSession`, and the errors
:class:`IdError`, :class:`ConfigMismatch`. The protocol and its security
argument are in :mod:`psi.protocol`.
"""

from __future__ import annotations

from psi.group import GroupEngine, InvalidPoint
from psi.normalize import IdError, NormalizedIds, NormalizeOptions, NormalizeReport, normalize_ids
from psi.protocol import ConfigMismatch, PsiConfig, PsiResult, PsiSession
from psi.runner import run_psi, run_psi_keys

__all__ = [
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
