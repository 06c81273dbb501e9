"""Vertical gradient boosting: hetero SecureBoost over additively homomorphic encryption.

Public API: :class:`BoostParams`; binning :class:`Binner`; the protocol machines
:class:`ActiveBooster`, :class:`PassiveBooster`; the runners :func:`train_active`,
:func:`train_passive`, :func:`predict_active`, :func:`predict_passive`; WOE/IV
(``vfl.boost.woe``), evaluation reports (``vfl.boost.evaluation``) and the XGBoost export
(``vfl.boost.export``). The security argument is in ``vfl.boost.protocol``.
"""

from __future__ import annotations

from vfl.boost.binning import Binner, FeatureBins
from vfl.boost.params import BoostParams
from vfl.boost.protocol import ActiveBooster, ActiveModel, PassiveBooster
from vfl.boost.runner import (
    export_active,
    export_passive,
    load_active,
    load_passive,
    predict_active,
    predict_passive,
    save_active,
    save_passive,
    train_active,
    train_passive,
)

__all__ = [
    "ActiveBooster",
    "ActiveModel",
    "Binner",
    "BoostParams",
    "FeatureBins",
    "PassiveBooster",
    "export_active",
    "export_passive",
    "load_active",
    "load_passive",
    "predict_active",
    "predict_passive",
    "save_active",
    "save_passive",
    "train_active",
    "train_passive",
]
