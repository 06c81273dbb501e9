"""Split-learning runners over :class:`party.Party`: ActiveTrainer and PassiveTrainer.

One active party (labels, its bottom model, the head) and one or more passive
parties (features, their bottom models) train ``logit = top(own(f_A(x_A)) + Σ_p f_p(x_p) W_p)``
on rows already aligned by PSI (``vfl.align``): row i is the same customer everywhere.

Modes (same model from the same seeds; :mod:`vfl.interactive` gives both one interface):

* ``he`` (default): the interactive layer ``h_p W_p`` runs on CKKS (:mod:`vfl.he.layer`);
  ``W_p`` is additively shared. *A learns ``z_p = h_p W_p`` per row and nothing else
  about P; P learns ``∂L/∂h_p`` per row (the label-leakage surface of all split
  learning; see ``grad_noise``) and nothing else about A.*
* ``plaintext``: P sends ``h_p`` in the clear and A holds ``W_p`` (comparison only:
  *A learns P's bottom outputs, which can reveal its features*).

The pieces: settings and errors (:mod:`vfl.config`); the plan/ack/resume and scoring
handshakes, a sans-I/O machine per role (:mod:`vfl.session`, whose docstring lists the
messages and what each party learns from them); the seeded schedules
(:mod:`vfl.schedule`: both parties derive the validation split and every epoch's
shuffling from the shared ``seed``, so no row order is ever exchanged); epoch
checkpoints (:mod:`vfl.checkpoints`: written atomically on both sides each epoch; a
run restarted after a crash of either party resumes from the newest epoch both have;
HE keys are never checkpointed, a resumed run makes fresh keys); the saved-half file
format (:mod:`vfl.model_file`). This module only moves messages, applies deadlines
and runs the models.

Saved models and scoring later (``save_model`` / ``load_model``): after ``fit()`` the
active party draws a random ``run_id`` and sends it with the ``stop`` command; each
party's ``save_model`` writes only what it owns (its bottom model, the active party's
head, and in HE mode its own share ``W_A`` or ``W_P``, never the peer's share, the
momentum or any CKKS key), tagged with that ``run_id``, the mode, ``k``, ``d`` and its
feature count. ``ActiveTrainer.load_model`` / ``PassiveTrainer.load_model`` read such a
file in a new process and check it against the given model and config. The first
``predict()`` then opens a scoring session (:mod:`vfl.session`): P refuses halves of
another run (``ConfigError`` on both sides), and in HE mode both make *fresh* key pairs
and exchange public contexts; scoring is steps 1-3 of :mod:`vfl.he.layer` as after
``fit()``. *Each party learns the other's (public, random) run_id and d/k, and then
exactly what scoring after ``fit()`` reveals: A learns z_P = h_P W_P per scored row,
P learns nothing.*

Label-leakage defence (off by default): ``grad_noise = σ`` adds Gaussian noise of
standard deviation ``σ / batch_rows`` to every entry of ``∂L/∂h`` before P sees it
(``∂L/∂h`` of a mean loss is O(1/batch_rows) per row). It lowers the AUC of the
norm/direction label attacks (Li et al. 2021) at a cost in model AUC; the
benchmark reports both (``benchmarks/vfl.py``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from party import Party, Tag
from party.errors import (
    ConfigError,
    LocalProtocolError,
    PartyTimeout,
    PartyUnavailable,
)
from party.handshake import open_run, run_with_rejoin
from vfl.checkpoints import Checkpoints, fingerprint
from vfl.config import EventFn, TrainConfig, TrainingInterrupted, TrainResult
from vfl.interactive import ACTIVE_SIDES, PASSIVE_SIDES, ActiveSide, Link, PassiveSide, msg_tag
from vfl.messages import (
    Ack,
    EpochCommand,
    EpochEnd,
    PlanAck,
    ScoreHello,
    ScoreHelloAck,
    ScoreReady,
    ScoreRequest,
    TrainPlan,
)
from vfl.model_file import (
    MODEL_FORMAT,
    check_width,
    load_weights,
    read_model,
    saved_share,
    write_model,
)
from vfl.schedule import epoch_batches, grad_noise, split_rows
from vfl.session import ActiveSession, PassiveSession, Rows, id_digest
from vfl.split import ActiveHead, binary_metrics, init_interactive

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]

_msg = msg_tag  # the old private name


def _check_features(x: npt.ArrayLike, what: str) -> np.ndarray:
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


def _score_of(m: dict[str, float]) -> float:
    """Early-stopping score: validation AUC, else -validation loss, else -training loss."""
    v = m.get("val_auc", math.nan)
    if not math.isnan(v):
        return v
    return -m.get("val_loss", m["train_loss"])


class _Trainer:
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

    def _no_fit(self, what: str) -> LocalProtocolError:
        return LocalProtocolError(f"{self.party.name}: a model from load_model() only scores; "
                                  f"build a new {what} to train")


# ---------------------------------------------------------------------------
# active party
# ---------------------------------------------------------------------------


class ActiveTrainer(_Trainer):
    """The label holder: runs the head and the loss, drives epochs, early stopping, scoring.

    Args:
        party: this side of the federation.
        passives: names of the passive parties (one or more).
        model: bottom + own linear + top (:class:`vfl.split.ActiveHead`).
        x, y: this party's features (rows × features) and 0/1 labels, in aligned order.
        ids: the aligned row IDs (checked against every passive's by digest).
        config: shared settings; ``on_event(kind, info)`` gets "step"/"epoch" progress.
    """

    def __init__(self, party: Party, passives: Sequence[str], model: ActiveHead,
                 x: npt.ArrayLike, y: npt.ArrayLike, *, ids: Sequence[str] | None = None,
                 config: TrainConfig | None = None, on_event: EventFn | None = None) -> None:
        super().__init__(party, config or TrainConfig(), on_event)
        self.x = _check_features(x, f"{party.name} features")
        self.y = np.asarray(y, dtype=np.float32).reshape(-1)
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"{self.y.shape[0]} labels for {self.x.shape[0]} feature rows")
        if not np.isin(self.y, (0.0, 1.0)).all():
            raise ValueError("labels must be 0 or 1")
        if not passives:
            raise ConfigError("at least one passive party is needed")
        self.passives = list(passives)
        self.model = model
        self.n_features = int(self.x.shape[1])
        self.k = model.k
        self.opt = torch.optim.Adam(model.parameters(), lr=self.cfg.lr)
        self.ids = list(ids) if ids is not None else None
        if self.ids is not None and len(self.ids) != len(self.y):
            raise ValueError(f"{len(self.ids)} ids for {len(self.y)} rows")
        self.d: dict[str, int] = {}
        self.sides: dict[str, ActiveSide] = {}  # one interactive layer per passive party
        self._side = ACTIVE_SIDES[self.cfg.mode]
        self._loaded_w: dict[str, FloatArray] = {}  # W_A (HE) or W_p (plaintext) from a file
        self.session: ActiveSession | None = None
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None
        self.best_epoch = -1

    # -- setup ----------------------------------------------------------------
    def _fp(self) -> str:
        c = self.cfg
        return fingerprint(role="active", mode=c.mode, rows=len(self.y),
                           ids=id_digest(self.ids, len(self.y)), bs=c.batch_size, seed=c.seed,
                           k=self.k, passives=tuple(self.passives), lr=c.lr_interactive,
                           mu=c.momentum)

    def _peers(self) -> list[str]:
        return list(self.passives)

    def _reset_state(self) -> Callable[[], None]:
        model, opt = copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict())

        def reset() -> None:
            self.model.load_state_dict(model)
            self.opt.load_state_dict(opt)
            self.sides, self.d, self.session = {}, {}, None
            self.history, self.best, self.best_epoch = [], None, -1
            self._cmd = 0

        return reset

    def _setup(self) -> int:
        """Handshake, plan, ACKs, key exchange; returns the epoch to resume from (-1: none)."""
        c = self.cfg
        self._handshake()
        sess = self.session = ActiveSession(self.party.name, self.passives)
        plan = sess.plan(TrainPlan(
            mode=c.mode, rows=len(self.y), id_digest=id_digest(self.ids, len(self.y)),
            batch_size=c.batch_size, epochs=c.epochs, seed=c.seed, val_fraction=c.val_fraction,
            k=self.k, lr_interactive=c.lr_interactive, momentum=c.momentum,
            checkpoints=self.ckpt.epochs()))
        self.party.broadcast(self.passives, self._tag(0, "plan"), plan)
        acks: dict[str, PlanAck] = {}
        for p in self.passives:
            acks[p] = self._recv(p, self._tag(0, "plan_ack"), PlanAck)
            if acks[p].error:
                break
        resume = sess.on_plan_acks(acks)
        for p in self.passives:
            self.d[p] = int(acks[p].d)
            side = self._side.from_plan(c.ckks, self.d[p], self.k, lr=c.lr_interactive,
                                        momentum=c.momentum, w_init=acks[p].w_init, peer=p)
            side.open(self._link(p), self._tag(0, "plan"))  # HE: the public contexts
            self.sides[p] = side
        self._command(sess.resume(resume))
        if resume >= 0:
            self._restore(self.ckpt.load(resume, self._fp()))
        return resume

    def _command(self, cmd: EpochCommand) -> None:
        self.party.broadcast(self.passives, self._tag(self._cmd, "cmd", "vfl.ctl"), cmd)
        self._cmd += 1

    # -- state ----------------------------------------------------------------
    def _shares(self) -> dict[str, Any]:
        """Our part of each W_p (and its momentum); a loaded half not yet opened: the saved W."""
        return {p: self.sides[p].state() if p in self.sides else
                {"w": torch.from_numpy(self._loaded_w[p].copy()),
                 "m": torch.zeros(self._loaded_w[p].shape, dtype=torch.float64)}
                for p in self.passives}

    def _set_shares(self, shares: dict[str, Any]) -> None:
        for p in self.passives:
            self.sides[p].set_state(shares[p])

    def _snapshot(self) -> dict[str, Any]:
        return {"model": copy.deepcopy(self.model.state_dict()), "shares": self._shares()}

    def _state(self, epoch: int) -> dict[str, Any]:
        return {"fingerprint": self._fp(), "epoch": epoch, **self._snapshot(),
                "opt": self.opt.state_dict(), "history": self.history,
                "best_epoch": self.best_epoch, "best": self.best}

    def _restore(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self._set_shares(st["shares"])
        self.history = list(st["history"])
        self.best_epoch = int(st["best_epoch"])
        self.best = st["best"]

    # -- one batch ------------------------------------------------------------
    def _forward(self, tag: Tag, rows: int, train: bool) -> FloatArray:
        total = np.zeros((rows, self.k))
        for p in self.passives:
            total += self.sides[p].forward(self._link(p), tag, rows, train)
        return total

    def _backward(self, tag: Tag, delta: FloatArray, epoch: int, step: int) -> None:
        c = self.cfg
        for i, p in enumerate(self.passives):
            noise = (grad_noise(c, epoch, step, i, (delta.shape[0], self.d[p]))
                     if c.grad_noise > 0 else None)
            self.sides[p].backward(self._link(p), tag, delta, noise)

    def _train_step(self, epoch: int, step: int, idx: np.ndarray) -> float:
        tag = self._tag(epoch, f"t{step}")
        z = self._forward(tag, len(idx), train=True)
        zp = torch.tensor(z, dtype=torch.float32, requires_grad=True)
        logit = self.model(torch.from_numpy(self.x[idx]), zp)
        loss = nn.functional.binary_cross_entropy_with_logits(logit, torch.from_numpy(self.y[idx]))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        assert zp.grad is not None
        self._backward(tag, zp.grad.double().numpy(), epoch, step)
        return float(loss.detach())

    def _score(self, tag_of: Callable[[int], Tag], rows: np.ndarray, x: np.ndarray) -> FloatArray:
        self.model.eval()
        out = []
        with torch.no_grad():
            for b, lo in enumerate(range(0, len(rows), self.cfg.eval_batch_size)):
                idx = rows[lo : lo + self.cfg.eval_batch_size]
                z = self._forward(tag_of(b), len(idx), train=False)
                logit = self.model(torch.from_numpy(x[idx]), torch.tensor(z, dtype=torch.float32))
                out.append(torch.sigmoid(logit).double().numpy())
        self.model.train()
        return np.concatenate(out) if out else np.zeros(0)

    # -- public API -------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train (or resume) with every passive party; restores the best validation epoch.

        A passive party that dies mid-run is waited for (``rejoin_s``); restarted with
        its checkpoint directory, it rejoins and both resume from their newest common
        checkpoint.
        """
        if self.loaded:
            raise self._no_fit("ActiveTrainer")
        return self._fit_with_rejoin(self._fit_once)

    def _fit_once(self) -> TrainResult:
        where = "setup"
        try:
            resume = self._setup()
            sess = self.session
            assert sess is not None
            c = self.cfg
            train, val = split_rows(len(self.y), c.val_fraction, c.seed)
            epoch = resume
            for epoch in range(resume + 1, c.epochs):
                if self.best_epoch >= 0 and epoch - self.best_epoch > c.patience:
                    break
                self._command(sess.train(epoch, self.best_epoch))
                batches = epoch_batches(train, c.batch_size, c.seed, epoch)
                losses = []
                for s, idx in enumerate(batches):
                    where = f"epoch {epoch}, step {s}"
                    losses.append(self._train_step(epoch, s, idx))
                    self._emit("step", epoch=epoch, step=s + 1, steps=len(batches),
                               loss=losses[-1])
                where = f"epoch {epoch}, validation"
                metrics = {"epoch": float(epoch), "train_loss": float(np.mean(losses))}
                if len(val):
                    prob = self._score(self._tags(epoch, "v"), val, self.x)
                    metrics.update({f"val_{k}": v for k, v in binary_metrics(self.y[val], prob).items()})
                best = (_score_of(self.history[self.best_epoch]) if self.best_epoch >= 0
                        else -math.inf)
                if _score_of(metrics) > best:
                    self.best_epoch, self.best = epoch, self._snapshot()
                self.history.append(metrics)
                self.party.broadcast(self.passives, self._tag(epoch, "end", "vfl.ctl"),
                                     sess.end_epoch(self.best_epoch))
                sess.on_acks({p: self._recv(p, self._tag(epoch, "ack", "vfl.ctl"), Ack)
                              for p in self.passives})
                self.ckpt.save(epoch, self._state(epoch))
                self._emit("epoch", **metrics, best_epoch=self.best_epoch)
            where = "stop"
            self.run_id = secrets.token_hex(16)  # names the trained model (both halves store it)
            self._command(sess.stop(epoch, self.best_epoch, self.run_id))
            if self.best is not None:
                self.model.load_state_dict(self.best["model"])
                self._set_shares(self.best["shares"])
            return TrainResult(history=self.history, best_epoch=self.best_epoch,
                               resumed_from=resume)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, where) from e

    def predict(self, x: npt.ArrayLike, *, ids: Sequence[str] | None = None) -> FloatArray:
        """Score aligned rows with every passive party (each calls ``PassiveTrainer.predict``).

        After ``load_model`` the first call opens a scoring session (model IDs checked,
        fresh CKKS keys in HE mode); the passives' first ``predict`` answers it.
        """
        xx = _check_features(x, f"{self.party.name} features")
        check_width(xx, self.n_features, self.party.name)
        if self.loaded and not self._opened:
            try:
                self._open()
            except (PartyUnavailable, PartyTimeout) as e:
                raise self._interrupted(e, "opening the scoring session") from e
        if self.session is None or not self.sides:
            raise LocalProtocolError(f"{self.party.name}: scoring needs fit() (key exchange) "
                                     "or load_model() first")
        r = self._score_round
        self._score_round += 1
        req = self.session.score(Rows(len(xx), id_digest(ids, len(xx))), self.cfg.eval_batch_size)
        try:
            self.party.broadcast(self.passives, self._tag(r, "req", "vfl.score"), req)
            refused = self.session.on_ready(
                {p: self._recv(p, self._tag(r, "ok", "vfl.score"), ScoreReady)
                 for p in self.passives})
            if refused:
                raise ConfigError(f"{refused[0]} refused to score: its rows or IDs differ")
            return self._score(self._tags(r, "s", "vfl.score"), np.arange(len(xx)), xx)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, "scoring") from e

    def _open(self) -> None:
        """Scoring session of loaded halves: same model ID everywhere, fresh HE keys."""
        c = self.cfg
        assert self.run_id is not None and self.session is not None
        self._handshake("vfl.score")
        tag = self._tag(0, "hello", "vfl.open")
        self.party.broadcast(self.passives, tag, self.session.hello(self.run_id, c.mode, self.k))
        acks: dict[str, ScoreHelloAck] = {}
        for p in self.passives:
            acks[p] = self._recv(p, tag.at("hello_ack"), ScoreHelloAck)
            if acks[p].error:
                break
        self.session.on_hello_acks(acks, self.d)
        for p in self.passives:
            side = self._side.from_saved(c.ckks, self.d[p], self.k, lr=c.lr_interactive,
                                         momentum=c.momentum, w=self._loaded_w[p])  # our W only
            side.open(self._link(p), tag)
            self.sides[p] = side
        self._opened = True

    def save_model(self, path: str | Path) -> None:
        """This party's half of the trained model (atomically); useless without the peers'.

        Holds the head, and per passive party our share ``W_A`` (HE mode) or ``W_p``
        (plaintext mode, where the active party holds W by design); no key material.
        """
        if self.run_id is None:
            raise LocalProtocolError(f"{self.party.name}: save_model() needs a finished fit()")
        shares = {p: {"w": v["w"]} for p, v in self._shares().items()}
        write_model(path, {"role": "active", "party": self.party.name, "mode": self.cfg.mode,
                           "run_id": self.run_id, "k": self.k, "d": dict(self.d),
                           "n_features": self.n_features, "peers": list(self.passives),
                           "model": self.model.state_dict(), "shares": shares})

    @classmethod
    def load_model(cls, path: str | Path, party: Party, model: ActiveHead, *,
                   config: TrainConfig | None = None,
                   on_event: EventFn | None = None) -> ActiveTrainer:
        """The active half saved by ``save_model``, ready to ``predict`` (no retraining).

        ``model`` must have the trained architecture (its weights are replaced);
        ``config`` (default: the saved mode's defaults) must have the saved mode; the
        passive parties are the saved ones, each loading its own half.
        Raises ConfigError for a missing, unreadable or foreign file, another party's
        or role's half, a different architecture or mode.
        """
        st = read_model(path, "active", party.name, config)
        cfg = config or TrainConfig(mode=st["mode"])
        load_weights(model, st["model"], path)
        if int(st["k"]) != model.k:
            raise ConfigError(f"{path}: saved with k={st['k']}, the model has k={model.k}")
        n = int(st["n_features"])
        # one placeholder row: a loaded half scores the rows predict() is given, never trains
        self = cls(party, [str(p) for p in st["peers"]], model, np.zeros((1, n), np.float32),
                   np.zeros(1, np.float32), config=cfg, on_event=on_event)
        self.d = {str(p): int(v) for p, v in st["d"].items()}
        self._loaded_w = {p: saved_share(st, p, (self.d[p], self.k), path,
                                         f"interactive weights for {p}") for p in self.passives}
        self.session = ActiveSession(party.name, self.passives, loaded=True)
        self.run_id = str(st["run_id"])
        self.loaded = True
        return self


# ---------------------------------------------------------------------------
# passive party
# ---------------------------------------------------------------------------


class PassiveTrainer(_Trainer):
    """A feature holder: runs its bottom model; never sees labels or the active party's data.

    Args:
        party: this side of the federation.
        active: name of the active party.
        model: bottom model (rows × features -> rows × d).
        x: this party's features in aligned order; ``ids``: the aligned IDs.
        config: must agree with the active party's on mode (checked); the
            active party's plan sets batches, epochs, the shared seed and the SGD
            step of the shared interactive weights; ``lr`` (local Adam) is this party's own.
        w_seed: this party's private seed for the interactive weights' initial value.
        on_gradient: optional ``fn(rows, dL_dh)`` - what this party sees (for leakage audits).
    """

    def __init__(self, party: Party, active: str, model: nn.Module, x: npt.ArrayLike, *,
                 ids: Sequence[str] | None = None, config: TrainConfig | None = None,
                 w_seed: int | None = None, on_event: EventFn | None = None,
                 on_gradient: Callable[[np.ndarray, FloatArray], None] | None = None) -> None:
        super().__init__(party, config or TrainConfig(), on_event)
        self.active = active
        self.model = model
        self.x = _check_features(x, f"{party.name} features")
        self.n_features = int(self.x.shape[1])
        self.k = 0  # from the active party's plan
        self.ids = list(ids) if ids is not None else None
        if self.ids is not None and len(self.ids) != len(self.x):
            raise ValueError(f"{len(self.ids)} ids for {len(self.x)} rows")
        with torch.no_grad():
            self.d = int(model(torch.from_numpy(self.x[:2])).shape[1])
        seed = self.cfg.seed if w_seed is None else w_seed
        self.w_seed = int.from_bytes(hashlib.sha256(f"{seed}/{party.name}".encode()).digest()[:4],
                                     "little")
        self.opt = torch.optim.Adam(model.parameters(), lr=self.cfg.lr)
        self._side = PASSIVE_SIDES[self.cfg.mode]
        self.side: PassiveSide | None = None
        self._loaded_w: FloatArray | None = None  # W_P read by load_model (HE mode)
        self.session: PassiveSession | None = None
        self.plan: TrainPlan | None = None
        self.best: dict[str, Any] | None = None
        self.best_epoch = -1
        self.on_gradient = on_gradient

    def _rows(self, x: np.ndarray, ids: Sequence[str] | None) -> Rows:
        return Rows(len(x), id_digest(ids, len(x)))

    def _fp(self) -> str:
        assert self.plan is not None
        p = self.plan
        return fingerprint(role="passive", mode=p.mode, rows=p.rows, ids=p.id_digest,
                           bs=p.batch_size, seed=p.seed, k=p.k, d=self.d, lr=p.lr_interactive,
                           mu=p.momentum)

    def _peers(self) -> list[str]:
        return [self.active]

    def _reset_state(self) -> Callable[[], None]:
        model, opt = copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict())

        def reset() -> None:
            self.model.load_state_dict(model)
            self.opt.load_state_dict(opt)
            self.side, self.plan, self.session, self.best, self.best_epoch = None, None, None, None, -1
            self._cmd = 0

        return reset

    def _setup(self) -> PassiveSession:
        c = self.cfg
        self._handshake()
        sess = self.session = PassiveSession(self.party.name, self.active,
                                             self._rows(self.x, self.ids), c.mode)
        plan = self._recv(self.active, self._tag(0, "plan"), TrainPlan)
        w_init = init_interactive(self.d, plan.k, self.w_seed)
        ack = sess.on_plan(plan, d=self.d, checkpoints=self.ckpt.epochs(),
                           w_init=self._side.plan_weights(w_init))
        self.party.send(self.active, self._tag(0, "plan_ack"), ack)
        if ack.error:
            raise ConfigError(ack.error)
        self.plan = plan
        self.side = self._side(c.ckks, w_init, lr=plan.lr_interactive, momentum=plan.momentum)
        self.side.open(self._link(self.active), self._tag(0, "plan"))  # HE: public contexts
        return sess

    def _next_command(self) -> EpochCommand:
        cmd = self._recv(self.active, self._tag(self._cmd, "cmd", "vfl.ctl"), EpochCommand)
        self._cmd += 1
        return cmd

    def _snapshot(self) -> dict[str, Any]:
        shares = self.side.state() if self.side is not None else {}
        return {"model": copy.deepcopy(self.model.state_dict()), "shares": shares}

    def _restore_snapshot(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        if self.side is not None:
            self.side.set_state(snap["shares"])

    def _bottom(self, idx: np.ndarray, x: np.ndarray) -> tuple[torch.Tensor, FloatArray]:
        vb = self.cfg.ckks.value_bound
        h_t = self.model(torch.from_numpy(x[idx])).clamp(-vb, vb)
        return h_t, h_t.detach().double().numpy()

    def _train_step(self, epoch: int, step: int, idx: np.ndarray) -> None:
        assert self.side is not None
        tag = self._tag(epoch, f"t{step}")
        link = self._link(self.active)
        h_t, h = self._bottom(idx, self.x)
        self.side.forward(link, tag, h, train=True)
        g = self.side.gradient(link, tag, h.shape)
        if self.on_gradient is not None:
            self.on_gradient(idx, g)
        self.opt.zero_grad()
        h_t.backward(torch.from_numpy(g).float())
        self.opt.step()

    def _serve(self, tag_of: Callable[[int], Tag], rows: int, x: np.ndarray, bs: int) -> None:
        assert self.side is not None
        link = self._link(self.active)
        self.model.eval()
        with torch.no_grad():
            for b, lo in enumerate(range(0, rows, bs)):
                idx = np.arange(lo, min(rows, lo + bs))
                _, h = self._bottom(idx, x)
                self.side.forward(link, tag_of(b), h, train=False)
        self.model.train()

    def fit(self) -> TrainResult:
        """Follow the active party's plan until it says stop; restores the best epoch.

        If the active party dies mid-run, waits ``rejoin_s`` for it and resumes.
        """
        if self.loaded:
            raise self._no_fit("PassiveTrainer")
        return self._fit_with_rejoin(self._fit_once)

    def _fit_once(self) -> TrainResult:
        where = "setup"
        try:
            sess = self._setup()
            assert self.plan is not None
            plan = self.plan
            train, val = split_rows(plan.rows, plan.val_fraction, plan.seed)
            resumed = -1
            while True:
                cmd = sess.on_command(self._next_command())
                if cmd.action == "resume":
                    resumed = cmd.epoch
                    if cmd.epoch >= 0:
                        st = self.ckpt.load(cmd.epoch, self._fp())
                        self._restore_snapshot(st)
                        self.opt.load_state_dict(st["opt"])
                        self.best_epoch, self.best = int(st["best_epoch"]), st["best"]
                    continue
                if cmd.action == "stop":
                    self.run_id, self.k = cmd.run_id, plan.k
                    if self.best is not None:
                        self._restore_snapshot(self.best)
                    return TrainResult(history=[], best_epoch=cmd.best_epoch, resumed_from=resumed)
                epoch = cmd.epoch
                batches = epoch_batches(train, plan.batch_size, plan.seed, epoch)
                for s, idx in enumerate(batches):
                    where = f"epoch {epoch}, step {s}"
                    self._train_step(epoch, s, idx)
                    self._emit("step", epoch=epoch, step=s + 1, steps=len(batches))
                where = f"epoch {epoch}, validation"
                if len(val):
                    self._serve(self._tags(epoch, "v"), len(val), self.x[val],
                                self.cfg.eval_batch_size)
                end = sess.on_epoch_end(self._recv(self.active, self._tag(epoch, "end", "vfl.ctl"),
                                                   EpochEnd))
                if end.best_epoch == epoch:
                    self.best_epoch, self.best = epoch, self._snapshot()
                self.ckpt.save(epoch, {"fingerprint": self._fp(), "epoch": epoch,
                                       **self._snapshot(), "opt": self.opt.state_dict(),
                                       "best_epoch": self.best_epoch, "best": self.best})
                self.party.send(self.active, self._tag(epoch, "ack", "vfl.ctl"), sess.ack())
                self._emit("epoch", epoch=epoch)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, where) from e

    def save_model(self, path: str | Path) -> None:
        """This party's half (atomically): its bottom model and, in HE mode, its share
        ``W_P`` (never ``W_A``, the momentum or any key); useless without the peers'."""
        if self.run_id is None:
            raise LocalProtocolError(f"{self.party.name}: save_model() needs a finished fit()")
        w = self.side.share() if self.side is not None else self._loaded_w
        shares = {"w": torch.from_numpy(w.copy())} if w is not None else {}
        write_model(path, {"role": "passive", "party": self.party.name, "mode": self.cfg.mode,
                           "run_id": self.run_id, "k": self.k, "d": self.d,
                           "n_features": self.n_features, "peers": [self.active],
                           "model": self.model.state_dict(), "shares": shares})

    @classmethod
    def load_model(cls, path: str | Path, party: Party, model: nn.Module, *,
                   config: TrainConfig | None = None,
                   on_event: EventFn | None = None) -> PassiveTrainer:
        """The passive half saved by ``save_model``, ready to answer ``predict`` calls.

        ``model`` must have the trained architecture (its weights are replaced);
        ``config`` (default: the saved mode's defaults) must have the saved mode.
        Raises ConfigError for a missing, unreadable or foreign file, another party's
        or role's half, a different architecture or mode.
        """
        st = read_model(path, "passive", party.name, config)
        cfg = config or TrainConfig(mode=st["mode"])
        load_weights(model, st["model"], path)
        n, d = int(st["n_features"]), int(st["d"])
        # two placeholder rows (the bottom model's width is read from them); never trained
        self = cls(party, str(st["peers"][0]), model, np.zeros((2, n), np.float32), config=cfg,
                   on_event=on_event)
        if self.d != d:
            raise ConfigError(f"{path}: saved with output width d={d}, the model gives {self.d}")
        self.k = int(st["k"])
        if self._side.keeps_share:
            self._loaded_w = saved_share(st, None, (d, self.k), path, "interactive share")
        self.session = PassiveSession(party.name, self.active, Rows(0, ""), cfg.mode, loaded=True)
        self.run_id = str(st["run_id"])
        self.loaded = True
        return self

    def _open(self) -> None:
        """Answer the active party's ScoreHello: refuse halves of another run, fresh HE keys."""
        c = self.cfg
        assert self.session is not None
        self._handshake("vfl.score")
        tag = self._tag(0, "hello", "vfl.open")
        hello = self._recv(self.active, tag, ScoreHello)
        ack = self.session.on_hello(hello, run_id=self.run_id or "", k=self.k, d=self.d)
        self.party.send(self.active, tag.at("hello_ack"), ack)
        if ack.error:
            raise ConfigError(ack.error)
        w = self._loaded_w if self._loaded_w is not None else np.zeros((self.d, self.k))
        self.side = self._side(c.ckks, w, lr=c.lr_interactive, momentum=c.momentum)  # fresh keys
        self.side.open(self._link(self.active), tag)
        self._opened = True

    def predict(self, x: npt.ArrayLike, *, ids: Sequence[str] | None = None) -> None:
        """Take part in the active party's scoring of aligned rows (learns no scores).

        After ``load_model`` the first call first answers the active party's scoring
        session (model IDs checked, fresh CKKS keys in HE mode).
        """
        xx = _check_features(x, f"{self.party.name} features")
        check_width(xx, self.n_features, self.party.name)
        if self.loaded and not self._opened:
            try:
                self._open()
            except (PartyUnavailable, PartyTimeout) as e:
                raise self._interrupted(e, "opening the scoring session") from e
        if self.session is None or self.side is None:
            raise LocalProtocolError(f"{self.party.name}: scoring needs fit() (key exchange) "
                                     "or load_model() first")
        r = self._score_round
        self._score_round += 1
        try:
            req = self._recv(self.active, self._tag(r, "req", "vfl.score"), ScoreRequest)
            ready = self.session.on_score_request(req, self._rows(xx, ids))
            self.party.send(self.active, self._tag(r, "ok", "vfl.score"), ready)
            if not ready.ok:
                raise ConfigError(ready.error)
            self._serve(self._tags(r, "s", "vfl.score"), len(xx), xx, req.batch_size)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, "scoring") from e


__all__ = [
    "MODEL_FORMAT",
    "ActiveTrainer",
    "PassiveTrainer",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "epoch_batches",
    "id_digest",
    "split_rows",
]
