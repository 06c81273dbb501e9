"""The active party's runner (labels, the head, the loss): drives the session of
:mod:`vfl.session` and one interactive layer per passive party (:mod:`vfl.interactive`)."""

from __future__ import annotations

import copy
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
from party.errors import ConfigError, LocalProtocolError, PartyTimeout, PartyUnavailable
from vfl.checkpoints import fingerprint
from vfl.config import EventFn, TrainConfig, TrainResult
from vfl.interactive import ACTIVE_SIDES, ActiveSide
from vfl.messages import Ack, EpochCommand, PlanAck, ScoreHelloAck, ScoreReady, TrainPlan
from vfl.model_file import load_weights, read_model, saved_share, write_model
from vfl.runner import FloatArray, TrainerBase, check_features, score_of
from vfl.schedule import epoch_batches, grad_noise, split_rows
from vfl.session import ActiveSession, Rows, id_digest
from vfl.split import ActiveHead, binary_metrics


class ActiveTrainer(TrainerBase):
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
        self.x = check_features(x, f"{party.name} features")
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
        # label DP: the noise must be unpredictable to the passive parties, and the same
        # when an epoch is redone after a crash (a second, fresh draw would leak more)
        self._noise_key = [int.from_bytes(secrets.token_bytes(8), "big") for _ in range(2)]

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
                "best_epoch": self.best_epoch, "best": self.best,
                "noise_key": list(self._noise_key)}

    def _restore(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self._set_shares(st["shares"])
        self.history = list(st["history"])
        self.best_epoch = int(st["best_epoch"])
        self.best = st["best"]
        if "noise_key" in st:
            self._noise_key = [int(v) for v in st["noise_key"]]

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
        y = torch.from_numpy(self.y[idx])
        loss = nn.functional.binary_cross_entropy_with_logits(logit, y)
        self.opt.zero_grad()
        if self.cfg.label_epsilon is None:
            loss.backward()
        else:  # label DP: every update and every gradient a passive sees follows from this
            with torch.no_grad():
                g = (torch.sigmoid(logit) - y) / len(idx)  # d(mean BCE)/d(logit)
                rng = np.random.default_rng(np.random.SeedSequence(
                    [*self._noise_key, epoch, step]))
                sd = self.cfg.label_noise_multiplier / len(idx)  # sensitivity of a label: 1/B
                g += torch.from_numpy(rng.normal(0.0, sd, size=tuple(g.shape))).to(g.dtype)
            logit.backward(g)
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
                best = (score_of(self.history[self.best_epoch]) if self.best_epoch >= 0
                        else -math.inf)
                if score_of(metrics) > best:
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
        xx = self._rows_to_score(x)
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


__all__ = ["ActiveTrainer"]
