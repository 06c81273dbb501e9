"""What both split-training runners share: tags, links, the run handshake, the rejoin
loop and how an interrupted run is reported (``vfl.active``, ``vfl.passive``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from party import Party, Tag
from party.errors import LocalProtocolError, PartyTimeout, PartyUnavailable
from party.handshake import open_run, run_with_rejoin
from vfl.checkpoints import Checkpoints
from vfl.config import EventFn, TrainConfig, TrainingInterrupted, TrainResult
from vfl.interactive import Link
from vfl.model_file import check_width

FloatArray = npt.NDArray[np.float64]


def check_features(x: npt.ArrayLike, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{what}: features must be a 2-d array with rows, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"{what}: {int(bad.sum())} NaN/Inf feature values (first at row {rows[0]}, "
            f"column {cols[0]}); impute or drop them before training"
        )
    return a


def score_of(m: dict[str, float]) -> float:
    """Early-stopping score: validation AUC, else -validation loss, else -training loss."""
    v = m.get("val_auc", math.nan)
    if not math.isnan(v):
        return v
    return -m.get("val_loss", m["train_loss"])


class TrainerBase:
    n_features: int  # this party's feature columns (set by the role's __init__)

    def __init__(self, party: Party, config: TrainConfig, on_event: EventFn | None) -> None:
        self.party = party
        self.cfg = config
        self.on_event = on_event
        self.ckpt = Checkpoints(config.checkpoint_dir, config.keep_checkpoints)
        self._cmd = 0
        self._score_round = 0
        self.run_id: str | None = None  # the trained model's ID (set by fit's stop command)
        self.loaded = False  # built by load_model: scores only, opens a session first
        self._opened = False

    def _emit(self, kind: str, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, info)

    def _tag(self, round_: int, step: str, protocol: str = "vfl") -> Tag:
        return Tag(protocol, self.cfg.session, round_, step)

    def _tags(self, round_: int, prefix: str, protocol: str = "vfl") -> Callable[[int], Tag]:
        def tag_of(b: int) -> Tag:
            return self._tag(round_, f"{prefix}{b}", protocol)

        return tag_of

    def _recv(self, src: str, tag: Tag, kind: type[Any]) -> Any:
        return self.party.recv(src, tag, kind, timeout_s=self.cfg.timeout_s)

    def _link(self, peer: str) -> Link:
        return Link(self.party, peer, self.cfg.timeout_s)

    def _peers(self) -> list[str]:
        raise NotImplementedError

    def _reset_state(self) -> Callable[[], None]:
        """A function that puts the trainer back as it was before fit() (for a rejoin)."""
        raise NotImplementedError

    def _handshake(self, protocol: str = "vfl") -> None:
        """The confirmed run handshake with each peer (party.handshake), before the plan
        (training: the mode is compared) or the ScoreHello (scoring: the model check follows)."""
        info = {"mode": self.cfg.mode} if protocol == "vfl" else {}
        for p in self._peers():
            open_run(self.party, [p], protocol=protocol, session=self.cfg.session, info=info,
                     timeout_s=self.cfg.timeout_s)

    def _fit_with_rejoin(self, once: Callable[[], TrainResult]) -> TrainResult:
        def gone(peer: str, cause: PartyUnavailable) -> TrainingInterrupted:
            return TrainingInterrupted(
                f"{self.party.name}: {peer} did not rejoin within {self.cfg.rejoin_s:g} s "
                f"({cause.reason}); restart it with the same settings to resume from the last "
                "checkpoint")

        return run_with_rejoin(
            self.party, once, peers=self._peers(), session=self.cfg.session,
            rejoin_s=self.cfg.rejoin_s, on_rejoin=self._reset_state(), gone=gone,
            cause_of=lambda e: e.__cause__ if isinstance(e, TrainingInterrupted) else None,
            then="resuming from the newest common checkpoint")

    def _interrupted(self, e: Exception, where: str) -> TrainingInterrupted:
        done = self.ckpt.epochs()
        last = f"epoch {done[-1]}" if done else "none (no checkpoint_dir or first epoch)"
        return TrainingInterrupted(
            f"{self.party.name}: {e} during {where}; last complete checkpoint: {last}. "
            "Restart the stopped party with the same settings to resume."
        )

    def fit(self) -> TrainResult:
        """Train (or resume) until the active party stops; restores the best validation epoch.

        The active party drives the epochs (early stopping on the validation AUC), the
        passive parties follow its plan. A peer that dies mid-run is waited for
        (``rejoin_s``); restarted with its checkpoint directory, it rejoins and all
        resume from their newest common checkpoint.
        """
        if self.loaded:
            raise LocalProtocolError(f"{self.party.name}: a model from load_model() only "
                                     f"scores; build a new {type(self).__name__} to train")
        return self._fit_with_rejoin(self._fit_once)

    def _fit_once(self) -> TrainResult:
        raise NotImplementedError

    def _open(self) -> None:
        """Open the scoring session of loaded halves (model IDs checked, fresh HE keys)."""
        raise NotImplementedError

    def _rows_to_score(self, x: npt.ArrayLike) -> np.ndarray:
        """The checked rows of a ``predict`` call; a loaded half first opens its session."""
        xx = check_features(x, f"{self.party.name} features")
        check_width(xx, self.n_features, self.party.name)
        if self.loaded and not self._opened:
            try:
                self._open()
            except (PartyUnavailable, PartyTimeout) as e:
                raise self._interrupted(e, "opening the scoring session") from e
        return xx


__all__ = ["FloatArray", "TrainerBase", "check_features", "score_of"]
