"""One ROC, AUC and KS for every vertical model (the split NN and SecureBoost).

``roc`` groups tied scores into one point, so AUC here equals the Mann–Whitney
rank statistic with average ranks, and KS is ``max(TPR - FPR)`` over the
thresholds (FATE's and the credit analyst's definition; a model whose scores are
reversed has KS near 0, not near 1). The strict functions raise
:class:`~party.errors.ConfigError` on bad labels or a single class; the
``*_or_nan`` forms, for per-epoch validation where a small set can hold one
class, return NaN for a single class instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from party.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def check_scores(y: Any, s: Any) -> tuple[FloatArray, FloatArray]:
    """0/1 labels and scores as float vectors of one length, both classes present."""
    ya, sa = np.asarray(y, dtype=np.float64).ravel(), np.asarray(s, dtype=np.float64).ravel()
    if len(ya) != len(sa) or len(ya) == 0:
        raise ConfigError(f"{len(ya)} labels for {len(sa)} scores")
    if not np.isin(ya, (0.0, 1.0)).all():
        raise ConfigError("the evaluation needs 0/1 labels")
    if ya.min() == ya.max():
        raise ConfigError("AUC and KS need both classes among the labels")
    return ya, sa


def roc(y: Any, s: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(fpr, tpr, thresholds), one point per distinct score, ties grouped."""
    ya, sa = check_scores(y, s)
    o = np.argsort(-sa, kind="mergesort")
    ys, ss = ya[o], sa[o]
    distinct = np.flatnonzero(np.diff(ss)) if len(ss) > 1 else np.array([], dtype=np.int64)
    idx = np.r_[distinct, len(ss) - 1]
    tp = np.cumsum(ys)[idx]
    fp = (idx + 1) - tp
    tpr = np.r_[0.0, tp / ys.sum()]
    fpr = np.r_[0.0, fp / (len(ys) - ys.sum())]
    return fpr, tpr, np.r_[np.inf, ss[idx]]


def auc(y: Any, s: Any) -> float:
    """Area under the ROC curve (ties grouped)."""
    fpr, tpr, _ = roc(y, s)
    return float(np.trapezoid(tpr, fpr))


def ks(y: Any, s: Any) -> float:
    """Kolmogorov–Smirnov statistic ``max(TPR - FPR)``."""
    fpr, tpr, _ = roc(y, s)
    return float(np.max(tpr - fpr))


def _single_class(y: Any) -> bool:
    ya = np.asarray(y).astype(bool).ravel()
    return bool(len(ya) and (ya.all() or (~ya).all()))


def auc_or_nan(y: Any, s: Any) -> float:
    """:func:`auc`, or NaN when the labels hold one class."""
    return float("nan") if _single_class(y) else auc(y, s)


def ks_or_nan(y: Any, s: Any) -> float:
    """:func:`ks`, or NaN when the labels hold one class."""
    return float("nan") if _single_class(y) else ks(y, s)


__all__ = ["auc", "auc_or_nan", "check_scores", "ks", "ks_or_nan", "roc"]
