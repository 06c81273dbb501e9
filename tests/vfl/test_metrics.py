"""vfl.metrics: the one AUC/KS both vertical models report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from party import ConfigError
from vfl import split
from vfl.boost import evaluation
from vfl.metrics import auc, auc_or_nan, ks, ks_or_nan


def _rank_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_auc_is_the_rank_statistic_with_ties_and_ks_is_the_largest_gap() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = np.round(y * 0.3 + rng.normal(size=400), 1)  # rounded: many ties
    assert auc(y, s) == pytest.approx(_rank_auc(y, s), abs=1e-12)
    gaps = [np.mean(s[y == 1] >= t) - np.mean(s[y == 0] >= t) for t in np.unique(s)]
    assert ks(y, s) == pytest.approx(max(gaps), abs=1e-12)


def test_reversed_scores_have_a_small_ks_and_the_split_nn_and_boost_agree() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert ks(y, s) == 0.0 and auc(y, s) == 0.0  # max(TPR - FPR), not max |TPR - FPR|
    m = split.binary_metrics(y, s)
    assert (m["auc"], m["ks"]) == (evaluation.auc(y, s), evaluation.ks(y, s))


def test_one_class_is_an_error_in_reports_and_nan_in_validation() -> None:
    with pytest.raises(ConfigError, match="both classes"):
        ks([1, 1], [0.2, 0.3])
    assert math.isnan(auc_or_nan([1, 1], [0.2, 0.3])) and math.isnan(ks_or_nan([0, 0], [0.2, 0.3]))
    assert math.isnan(split.binary_metrics([1, 1], [0.2, 0.3])["auc"])
