"""A passive party's runner (features, its bottom model): answers the session of
:mod:`vfl.session` and runs its side of the interactive layer (:mod:`vfl.interactive`)."""

from __future__ import annotations

import copy
import hashlib
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
from vfl.interactive import PASSIVE_SIDES, PassiveSide
from vfl.messages import EpochCommand, EpochEnd, ScoreHello, ScoreRequest, TrainPlan
from vfl.model_file import load_weights, read_model, saved_share, write_model
from vfl.runner import FloatArray, TrainerBase, check_features
from vfl.schedule import epoch_batches, split_rows
from vfl.session import PassiveSession, Rows, id_digest
from vfl.split import init_interactive


class PassiveTrainer(TrainerBase):
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
        self.x = check_features(x, f"{party.name} features")
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
        xx = self._rows_to_score(x)
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


__all__ = ["PassiveTrainer"]
