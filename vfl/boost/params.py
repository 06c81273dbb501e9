"""Hyper-parameters of vertical SecureBoost (XGBoost's names and meanings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from party.errors import ConfigError

OBJECTIVES = ("binary:logistic", "reg:squarederror")
MODES = ("classic", "layered", "mix")


@dataclass(frozen=True)
class BoostParams:
    """XGBoost semantics: ``gain = G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)``, a split is kept
    when its gain exceeds ``gamma`` (XGBoost's ``min_split_loss``) and both children have a
    hessian sum ≥ ``min_child_weight``; leaf weight ``−η·G/(H+λ)``.

    Privacy settings (see ``vfl.boost.protocol``): ``mode`` ``classic`` lets every party's
    features compete at every node; ``layered`` uses only one passive party's features in the
    top ``passive_depth`` layers of each tree and only the active party's below them; ``mix``
    builds each tree from one party's features only (the parties take turns). ``min_rows``: every
    sum the active party decrypts covers at least this many rows (passive parties merge bins
    to guarantee it; so does every child of a passive split).
    """

    n_trees: int = 20
    max_depth: int = 5
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    max_bin: int = 32
    objective: str = "binary:logistic"
    base_score: float | None = None  # None: the label mean (XGBoost's intercept)
    mode: str = "classic"
    passive_depth: int = 2
    min_rows: int = 20  # privacy: no decrypted sum over fewer rows (1 = XGBoost's candidate set exactly)
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"BoostParams: {msg}")

        if self.n_trees < 1:
            bad(f"n_trees must be >= 1, got {self.n_trees}")
        if not 1 <= self.max_depth <= 16:
            bad(f"max_depth must be in 1..16, got {self.max_depth}")
        if not 0 < self.learning_rate <= 1:
            bad(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.reg_lambda < 0 or self.gamma < 0 or self.min_child_weight < 0:
            bad("reg_lambda, gamma and min_child_weight must be >= 0")
        if not 0 < self.subsample <= 1 or not 0 < self.colsample_bytree <= 1:
            bad("subsample and colsample_bytree must be in (0, 1]")
        if not 2 <= self.max_bin <= 127:  # HEU's bucket kernel takes int8 bin indices
            bad(f"max_bin must be in 2..127, got {self.max_bin}")
        if self.objective not in OBJECTIVES:
            bad(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.mode not in MODES:
            bad(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "layered" and not 0 < self.passive_depth < self.max_depth:
            bad(f"layered mode needs 0 < passive_depth < max_depth, got {self.passive_depth}")
        if self.min_rows < 1:
            bad(f"min_rows must be >= 1, got {self.min_rows}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoostParams:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"BoostParams: unknown settings {sorted(unknown)}")
        return cls(**d)
