"""Split-learning runners over :class:`party.Party`: ActiveTrainer and PassiveTrainer.

One active party (labels, its bottom model, the head) and one or more passive
parties (features, their bottom models) train ``logit = top(own(f_A(x_A)) + Σ_p f_p(x_p) W_p)``
on rows already aligned by PSI (``vfl.align``): row i is the same customer everywhere.

Modes (same model from the same seeds):

* ``he`` (default): the interactive layer ``h_p W_p`` runs on CKKS (:mod:`vfl.he.layer`);
  ``W_p`` is additively shared. *A learns ``z_p = h_p W_p`` per row and nothing else
  about P; P learns ``∂L/∂h_p`` per row (the label-leakage surface of all split
  learning; see ``grad_noise``) and nothing else about A.*
* ``plaintext``: P sends ``h_p`` in the clear and A holds ``W_p`` (comparison only:
  *A learns P's bottom outputs, which can reveal its features*).

Both parties derive the validation split and every epoch's shuffling from the
shared ``seed``, so no row order is ever exchanged. Each epoch ends with a
checkpoint on both sides, written atomically; a run restarted after a crash of
either party resumes from the newest epoch both parties have. HE keys are never
checkpointed: a resumed run makes fresh keys.

Saved models and scoring later (``save_model`` / ``load_model``): after ``fit()`` the
active party draws a random ``run_id`` and sends it with the ``stop`` command; each
party's ``save_model`` writes only what it owns (its bottom model, the active party's
head, and in HE mode its own share ``W_A`` or ``W_P``, never the peer's share, the
momentum or any CKKS key), tagged with that ``run_id``, the mode, ``k``, ``d`` and its
feature count. ``ActiveTrainer.load_model`` / ``PassiveTrainer.load_model`` read such a
file with ``torch.load(weights_only=True)`` in a new process and check it against the
given model and config. The first ``predict()`` then opens a scoring session: A sends
``ScoreHello(run_id, mode, k)``, P refuses halves of another run (``ConfigError`` on
both sides), and in HE mode both make *fresh* key pairs and exchange public contexts;
scoring is steps 1-3 of :mod:`vfl.he.layer` as after ``fit()``. *Each party learns
the other's (public, random) run_id and d/k, and then exactly what scoring after
``fit()`` reveals: A learns z_P = h_P W_P per scored row, P learns nothing.*

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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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
    PeerAborted,
    RemoteProtocolError,
    TesseraError,
)
from party.files import atomic_path, sweep_stale_tmp
from party.handshake import open_run, tell_peers
from vfl.he.context import CkksParams
from vfl.he.layer import ActiveLayer, PassiveLayer
from vfl.he.messages import (
    EncActivations,
    ForwardShare,
    GradShare,
    MaskedBackward,
    MaskedForward,
    MaskedGradient,
    PlainActivations,
    PlainGradient,
    PublicContext,
)
from vfl.messages import (
    Ack,
    EpochCommand,
    EpochEnd,
    PlanAck,
    ScoreHello,
    ScoreHelloAck,
    ScoreRequest,
    TrainPlan,
)
from vfl.split import ActiveHead, binary_metrics, init_interactive

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
EventFn = Callable[[str, dict[str, Any]], None]


class TrainingInterrupted(TesseraError):
    """A peer stopped (on purpose, or did not rejoin within ``rejoin_s``) or stopped answering."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings both parties must share (A sends them; P checks rows, IDs and mode).

    Attributes:
        mode: ``"he"`` (default) or ``"plaintext"``.
        epochs, batch_size: training length and mini-batch rows.
        eval_batch_size: rows per validation/scoring batch (chunked over ciphertexts).
        lr: Adam learning rate of each party's local modules.
        lr_interactive, momentum: SGD(+momentum) on the shared interactive weights W.
        seed: shared seed for the validation split and every epoch's shuffling.
        val_fraction: rows held out for early stopping.
        patience: stop after this many epochs without a better validation AUC.
        checkpoint_dir: per-party directory for epoch checkpoints (None: none).
        grad_noise: label-leakage defence, σ in units of 1/batch_rows (0: off).
        timeout_s: per-message deadline.
        rejoin_s: when a peer's process dies mid-run (no abort: kill -9, a lost
            machine), how long the survivor waits for it to be restarted; it then
            rejoins and resumes from the newest checkpoint both have (from the start
            without one). 0: fail at once. A peer that stops on purpose (bad input,
            Ctrl-C) tells its peers, and they stop at once.
    """

    mode: str = "he"
    epochs: int = 10
    batch_size: int = 1024
    eval_batch_size: int = 4096
    lr: float = 3e-3
    lr_interactive: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 3
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 3
    grad_noise: float = 0.0
    timeout_s: float = 600.0
    rejoin_s: float = 300.0
    session: str = "vfl"
    ckks: CkksParams = field(default_factory=CkksParams)

    def __post_init__(self) -> None:
        if self.mode not in ("he", "plaintext"):
            raise ConfigError(f"mode must be 'he' or 'plaintext', got {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("epochs, batch_size and eval_batch_size must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.grad_noise < 0 or not math.isfinite(self.grad_noise):
            raise ConfigError("grad_noise must be >= 0")
        if self.keep_checkpoints < 2:
            raise ConfigError("keep_checkpoints must be >= 2 (a crash between the parties' "
                              "writes needs the previous epoch)")


@dataclass
class TrainResult:
    """History of one fit (one dict of metrics per epoch) and the epoch restored."""

    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int


def id_digest(ids: Sequence[str] | None, rows: int) -> str:
    """SHA-256 over the ordered row IDs (both parties hold the same aligned IDs)."""
    h = hashlib.sha256(f"rows={rows}\n".encode())
    if ids is not None:
        for i in ids:
            h.update(str(i).encode())
            h.update(b"\n")
    return h.hexdigest()


def split_rows(rows: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices, from the shared seed."""
    perm = np.random.default_rng([seed, 1]).permutation(rows)
    nv = round(rows * val_fraction)
    if val_fraction > 0 and rows >= 2:
        nv = max(1, min(rows - 1, nv))
    return np.sort(perm[nv:]), np.sort(perm[:nv])


def epoch_batches(train: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """This epoch's shuffled mini-batches, from the shared seed."""
    order = np.random.default_rng([seed, 2, epoch]).permutation(train)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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


def _grad_noise(cfg: TrainConfig, epoch: int, step: int, p: int, shape: tuple[int, ...]) -> Any:
    rng = np.random.default_rng([cfg.seed, 3, epoch, step, p])
    return rng.normal(0.0, cfg.grad_noise / shape[0], size=shape)


def _msg(tag: Tag, name: str) -> Tag:
    """Message ``name`` of the batch ``tag`` names: ``t7`` gives ``t7/act`` (``tag.at(name)``
    alone would drop the step, and every batch of an epoch would share one slot)."""
    return tag.at(f"{tag.step}/{name}")


def _score_of(m: dict[str, float]) -> float:
    """Early-stopping score: validation AUC, else -validation loss, else -training loss."""
    v = m.get("val_auc", math.nan)
    if not math.isnan(v):
        return v
    return -m.get("val_loss", m["train_loss"])


#: ``format`` field of a file written by ``save_model``.
MODEL_FORMAT = "tessera.vfl.model/1"


def _read_model(path: str | Path, role: str, party: str, config: TrainConfig | None) -> dict[str, Any]:
    """Load and check one party's saved half (own file: ``weights_only``, never pickle)."""
    try:
        st = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"model file {path} does not exist") from None
    except Exception as e:
        raise ConfigError(f"model file {path} is unreadable (not a saved model?): {e}") from None
    if not isinstance(st, dict) or st.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path} is not a tessera vertical-FL model file (format "
                          f"{MODEL_FORMAT!r}); save it with save_model() after fit()")
    if st.get("role") != role:
        raise ConfigError(f"{path} holds the {st.get('role')} party's half of a model; "
                          f"this is the {role} party ({party})")
    if st.get("party") != party:
        raise ConfigError(f"{path} was saved by party {st.get('party')!r}, not {party!r}")
    if config is not None and config.mode != st["mode"]:
        raise ConfigError(f"{path} was trained in mode {st['mode']!r}, but the config asks "
                          f"for mode {config.mode!r}")
    return dict(st)


def _load_weights(model: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"{path}: the model's architecture differs from the saved one "
                          f"({' '.join(x.strip() for x in first[:3])})") from None


def _check_width(x: np.ndarray, n_features: int, who: str) -> None:
    if x.shape[1] != n_features:
        raise ConfigError(f"{who}: {x.shape[1]} feature columns, but the model was trained on "
                          f"{n_features}; use the same columns and preprocessing as in training")


def _fingerprint(**kw: Any) -> str:
    return hashlib.sha256(repr(sorted(kw.items())).encode()).hexdigest()[:16]


class _Checkpoints:
    """``epoch-NNNN.pt`` files in one directory, written atomically, newest ``keep`` kept."""

    def __init__(self, directory: str | None, keep: int) -> None:
        self.dir = Path(directory) if directory else None
        self.keep = keep
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            sweep_stale_tmp(self.dir)

    def epochs(self) -> list[int]:
        if self.dir is None:
            return []
        out = []
        for p in self.dir.glob("epoch-*.pt"):
            try:
                out.append(int(p.stem.split("-")[1]))
            except ValueError:
                continue
        return sorted(out)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        if self.dir is None:
            return
        with atomic_path(self.dir / f"epoch-{epoch:04d}.pt") as tmp:
            torch.save(state, tmp)
        for e in self.epochs()[: -self.keep]:
            (self.dir / f"epoch-{e:04d}.pt").unlink(missing_ok=True)

    def load(self, epoch: int, fingerprint: str) -> dict[str, Any]:
        assert self.dir is not None
        path = self.dir / f"epoch-{epoch:04d}.pt"
        try:
            state = torch.load(path, weights_only=True)  # own file; never a peer's bytes
        except Exception as e:
            raise ConfigError(f"checkpoint {path} is unreadable: {e}") from None
        if state.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"checkpoint {path} belongs to another run (data, mode or settings changed); "
                "use a fresh checkpoint_dir"
            )
        return dict(state)


class _Trainer:
    def __init__(self, party: Party, config: TrainConfig, on_event: EventFn | None) -> None:
        self.party = party
        self.cfg = config
        self.on_event = on_event
        self.ckpt = _Checkpoints(config.checkpoint_dir, config.keep_checkpoints)
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
        reset = self._reset_state()
        deadline = time.monotonic() + self.cfg.rejoin_s
        while True:
            try:
                return once()
            except TrainingInterrupted as e:
                cause = e.__cause__
                left = deadline - time.monotonic()
                if (not isinstance(cause, PartyUnavailable) or isinstance(cause, PeerAborted)
                        or cause.peer not in self._peers() or left <= 0):
                    tell_peers(self.party, self.cfg.session, e)
                    raise
                log.warning("%s: %s is gone (%s); waiting up to %.0f s for it to rejoin, then "
                            "resuming from the newest common checkpoint", self.party.name,
                            cause.peer, cause.reason, left)
                try:
                    self.party.transport.wait_peer(cause.peer, timeout_s=left)  # type: ignore[attr-defined]
                except PartyTimeout:
                    raise TrainingInterrupted(
                        f"{self.party.name}: {cause.peer} did not rejoin within "
                        f"{self.cfg.rejoin_s:g} s ({cause.reason}); restart it with the same "
                        "settings to resume from the last checkpoint") from cause
                reset()
            except BaseException as e:
                tell_peers(self.party, self.cfg.session, e)
                raise

    def _interrupted(self, e: Exception, where: str) -> TrainingInterrupted:
        done = self.ckpt.epochs()
        last = f"epoch {done[-1]}" if done else "none (no checkpoint_dir or first epoch)"
        return TrainingInterrupted(
            f"{self.party.name}: {e} during {where}; last complete checkpoint: {last}. "
            "Restart the stopped party with the same settings to resume."
        )


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
        x_checked = _check_features(x, f"{party.name} features")
        yy = np.asarray(y, dtype=np.float32).reshape(-1)
        if yy.shape[0] != x_checked.shape[0]:
            raise ValueError(f"{yy.shape[0]} labels for {x_checked.shape[0]} feature rows")
        if not np.isin(yy, (0.0, 1.0)).all():
            raise ValueError("labels must be 0 or 1")
        self._init_model(passives, model, x_checked, yy)
        self.ids = list(ids) if ids is not None else None
        if self.ids is not None and len(self.ids) != len(yy):
            raise ValueError(f"{len(self.ids)} ids for {len(yy)} rows")

    def _init_model(self, passives: Sequence[str], model: ActiveHead, x: np.ndarray,
                    y: np.ndarray) -> None:
        if not passives:
            raise ConfigError("at least one passive party is needed")
        self.passives = list(passives)
        self.model = model
        self.x, self.y = x, y
        self.ids = None
        self.n_features = int(x.shape[1])
        self.k = model.k
        self.opt = torch.optim.Adam(model.parameters(), lr=self.cfg.lr)
        self.d: dict[str, int] = {}
        self.layers: dict[str, ActiveLayer] = {}
        self._loaded_w: dict[str, FloatArray] = {}  # W_A (HE) or W_p (plaintext) from a file
        self.w: dict[str, FloatArray] = {}  # plaintext mode: W_p
        self.m: dict[str, FloatArray] = {}
        self._h: dict[str, FloatArray] = {}
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None
        self.best_epoch = -1
        self._rng = np.random.default_rng()

    # -- setup ----------------------------------------------------------------
    def _fp(self) -> str:
        c = self.cfg
        return _fingerprint(role="active", mode=c.mode, rows=len(self.y),
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
            self.layers, self.w, self.m, self.d, self._h = {}, {}, {}, {}, {}
            self.history, self.best, self.best_epoch = [], None, -1
            self._cmd = 0

        return reset

    def _setup(self) -> int:
        """Handshake, plan, ACKs, key exchange; returns the epoch to resume from (-1: none)."""
        c = self.cfg
        self._handshake()
        plan = TrainPlan(mode=c.mode, rows=len(self.y), id_digest=id_digest(self.ids, len(self.y)),
                         batch_size=c.batch_size, epochs=c.epochs, seed=c.seed,
                         val_fraction=c.val_fraction, k=self.k, lr_interactive=c.lr_interactive,
                         momentum=c.momentum, checkpoints=self.ckpt.epochs())
        self.party.broadcast(self.passives, self._tag(0, "plan"), plan)
        common = set(plan.checkpoints)
        w_init: dict[str, FloatArray] = {}
        for p in self.passives:
            ack = self._recv(p, self._tag(0, "plan_ack"), PlanAck)
            if ack.error:
                raise ConfigError(f"{p} refused the training plan: {ack.error}")
            self.d[p] = int(ack.d)
            common &= set(ack.checkpoints)
            w_init[p] = np.asarray(ack.w_init, dtype=np.float64)
        if c.mode == "he":
            for p in self.passives:
                layer = ActiveLayer(c.ckks, self.d[p], self.k, lr=c.lr_interactive,
                                    momentum=c.momentum)
                ctx = layer.public_context()  # parameters + public key only (row 28)
                log.info("%s: sending a %d-byte public CKKS context to %s", self.party.name,
                         len(ctx.context), p)
                self.party.send(p, self._tag(0, "ctx_a"), ctx)
                layer.on_public_context(self._recv(p, self._tag(0, "ctx_p"), PublicContext))
                self.layers[p] = layer
        else:
            for p in self.passives:
                if w_init[p].shape != (self.d[p], self.k):
                    raise RemoteProtocolError(f"W_init of shape {w_init[p].shape}", peer=p)
                self.w[p] = w_init[p]
                self.m[p] = np.zeros_like(w_init[p])
        resume = max(common) if common else -1
        self._command("resume", resume)
        if resume >= 0:
            self._restore(self.ckpt.load(resume, self._fp()))
        return resume

    def _command(self, action: str, epoch: int) -> None:
        run_id = ""
        if action == "stop":  # names the trained model (both halves store it)
            self.run_id = run_id = secrets.token_hex(16)
        self.party.broadcast(self.passives, self._tag(self._cmd, "cmd", "vfl.ctl"),
                             EpochCommand(action=action, epoch=epoch, best_epoch=self.best_epoch,
                                          run_id=run_id))
        self._cmd += 1

    # -- state ----------------------------------------------------------------
    def _shares(self) -> dict[str, Any]:
        if self.cfg.mode == "he":
            return {p: {"w": torch.from_numpy(la.w.copy()), "m": torch.from_numpy(la.m.copy())}
                    for p, la in self.layers.items()}
        return {p: {"w": torch.from_numpy(self.w[p].copy()), "m": torch.from_numpy(self.m[p].copy())}
                for p in self.passives}

    def _set_shares(self, shares: dict[str, Any]) -> None:
        for p in self.passives:
            w, m = shares[p]["w"].numpy().astype(np.float64), shares[p]["m"].numpy().astype(np.float64)
            if self.cfg.mode == "he":
                self.layers[p].w, self.layers[p].m = w.copy(), m.copy()
            else:
                self.w[p], self.m[p] = w.copy(), m.copy()

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
            if self.cfg.mode == "he":
                # step 1: Enc_P(h) - A learns nothing (P's key)
                m1 = self._recv(p, _msg(tag, "act"), EncActivations)
                if m1.rows != rows:
                    raise RemoteProtocolError(f"sent {m1.rows} rows, expected {rows}", peer=p)
                if bool(m1.row_blocked) != train:
                    raise RemoteProtocolError("training/evaluation phase mismatch", peer=p)
                # step 2: masked U_j - P learns nothing (every slot masked by A)
                self.party.send(p, _msg(tag, "fwd"), self.layers[p].on_activations(m1))
                # step 3: v = hW + Σr rounded - A learns z_P = hW, not h or W
                z = self.layers[p].on_forward_share(self._recv(p, _msg(tag, "share"), ForwardShare))
            else:
                # plaintext mode: A learns P's bottom output h itself (comparison only)
                h = self._recv(p, _msg(tag, "act"), PlainActivations).h
                if h.shape != (rows, self.d[p]):
                    raise RemoteProtocolError(f"activations of shape {h.shape}", peer=p)
                z = h @ self.w[p]
                self._h[p] = h
            total += z
        return total

    def _backward(self, tag: Tag, delta: FloatArray, epoch: int, step: int) -> None:
        c = self.cfg
        for i, p in enumerate(self.passives):
            noise = (_grad_noise(c, epoch, step, i, (delta.shape[0], self.d[p]))
                     if c.grad_noise > 0 else None)
            if c.mode == "he":
                # step 5: masked hᵀδ + T and Enc_A(δ) - P learns nothing of δ or W_A
                self.party.send(p, _msg(tag, "grad"), self.layers[p].backward(delta))
                # step 6: masked Y_i - A learns nothing of W_P
                back = self._recv(p, _msg(tag, "back"), MaskedBackward)
                gs = self.layers[p].on_masked_backward(back)
                if noise is not None:
                    gs = GradShare(g=gs.g + noise)
                # step 7: δWᵀ + Σs (+ noise) - P learns ∂L/∂h for its rows (by design)
                self.party.send(p, _msg(tag, "gshare"), gs)
            else:
                g = delta @ self.w[p].T
                if noise is not None:
                    g = g + noise
                self.m[p] = c.momentum * self.m[p] + self._h.pop(p).T @ delta
                self.w[p] = self.w[p] - c.lr_interactive * self.m[p]
                self.party.send(p, _msg(tag, "grad"), PlainGradient(g=g))  # P learns ∂L/∂h

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
            raise LocalProtocolError(f"{self.party.name}: a model from load_model() only scores; "
                                     "build a new ActiveTrainer to train")
        return self._fit_with_rejoin(self._fit_once)

    def _fit_once(self) -> TrainResult:
        where = "setup"
        try:
            resume = self._setup()
            c = self.cfg
            train, val = split_rows(len(self.y), c.val_fraction, c.seed)
            epoch = resume
            for epoch in range(resume + 1, c.epochs):
                if self.best_epoch >= 0 and epoch - self.best_epoch > c.patience:
                    break
                self._command("train", epoch)
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
                                     EpochEnd(epoch=epoch, best_epoch=self.best_epoch))
                for p in self.passives:
                    self._recv(p, self._tag(epoch, "ack", "vfl.ctl"), Ack)
                self.ckpt.save(epoch, self._state(epoch))
                self._emit("epoch", **metrics, best_epoch=self.best_epoch)
            where = "stop"
            self._command("stop", epoch)
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
        _check_width(xx, self.n_features, self.party.name)
        if self.loaded and not self._opened:
            try:
                self._open()
            except (PartyUnavailable, PartyTimeout) as e:
                raise self._interrupted(e, "opening the scoring session") from e
        if self.cfg.mode == "he" and not self.layers:
            raise LocalProtocolError(f"{self.party.name}: HE mode needs fit() (key exchange) first")
        r = self._score_round
        self._score_round += 1
        req = ScoreRequest(rows=len(xx), id_digest=id_digest(ids, len(xx)),
                           batch_size=self.cfg.eval_batch_size)
        try:
            self.party.broadcast(self.passives, self._tag(r, "req", "vfl.score"), req)
            for p in self.passives:
                if self._recv(p, self._tag(r, "ok", "vfl.score"), Ack).epoch != 0:
                    raise ConfigError(f"{p} refused to score: its rows or IDs differ")
            return self._score(self._tags(r, "s", "vfl.score"),
                               np.arange(len(xx)), xx)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, "scoring") from e

    def _open(self) -> None:
        """Scoring session of loaded halves: same model ID everywhere, fresh HE keys."""
        c = self.cfg
        assert self.run_id is not None
        self._handshake("vfl.score")
        tag = self._tag(0, "hello", "vfl.open")
        self.party.broadcast(self.passives, tag, ScoreHello(run_id=self.run_id, mode=c.mode,
                                                            k=self.k))
        for p in self.passives:
            ack = self._recv(p, tag.at("hello_ack"), ScoreHelloAck)
            if ack.error:
                raise ConfigError(f"{p} refused to score with this model: {ack.error}")
            if ack.run_id != self.run_id or ack.d != self.d[p]:
                raise RemoteProtocolError(
                    f"accepted model {ack.run_id[:12]} (d={ack.d}), expected "
                    f"{self.run_id[:12]} (d={self.d[p]})", peer=p)
        if c.mode == "he":
            for p in self.passives:
                layer = ActiveLayer(c.ckks, self.d[p], self.k, lr=c.lr_interactive,
                                    momentum=c.momentum)
                layer.w = self._loaded_w[p].copy()  # our share W_A only
                self.party.send(p, tag.at("ctx_a"), layer.public_context())
                layer.on_public_context(self._recv(p, tag.at("ctx_p"), PublicContext))
                self.layers[p] = layer
        self._opened = True

    def save_model(self, path: str | Path) -> None:
        """This party's half of the trained model (atomically); useless without the peers'.

        Holds the head, and per passive party our share ``W_A`` (HE mode) or ``W_p``
        (plaintext mode, where the active party holds W by design); no key material.
        """
        if self.run_id is None:
            raise LocalProtocolError(f"{self.party.name}: save_model() needs a finished fit()")
        shares = {p: {"w": v["w"]} for p, v in self._shares().items()}
        state = {"format": MODEL_FORMAT, "role": "active", "party": self.party.name,
                 "mode": self.cfg.mode, "run_id": self.run_id, "k": self.k, "d": dict(self.d),
                 "n_features": self.n_features, "peers": list(self.passives),
                 "model": self.model.state_dict(), "shares": shares}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

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
        st = _read_model(path, "active", party.name, config)
        cfg = config or TrainConfig(mode=st["mode"])
        self = cls.__new__(cls)
        _Trainer.__init__(self, party, cfg, on_event)
        _load_weights(model, st["model"], path)
        if int(st["k"]) != model.k:
            raise ConfigError(f"{path}: saved with k={st['k']}, the model has k={model.k}")
        n = int(st["n_features"])
        self._init_model(list(st["peers"]), model, np.zeros((0, n), np.float32),
                         np.zeros(0, np.float32))
        self.d = {str(p): int(v) for p, v in st["d"].items()}
        self._loaded_w = {}
        for p in self.passives:
            w = st["shares"][p]["w"].numpy().astype(np.float64)
            if w.shape != (self.d[p], self.k):
                raise ConfigError(f"{path}: interactive weights for {p} of shape {w.shape}")
            self._loaded_w[p] = w
            if cfg.mode == "plaintext":
                self.w[p], self.m[p] = w.copy(), np.zeros_like(w)
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
        self.layer: PassiveLayer | None = None
        self._loaded_w: FloatArray | None = None  # W_P read by load_model (HE mode)
        self.w: FloatArray | None = None  # HE: W_P; plaintext: unused after sending W_init
        self.plan: TrainPlan | None = None
        self.best: dict[str, Any] | None = None
        self.best_epoch = -1
        self.on_gradient = on_gradient

    def _fp(self) -> str:
        assert self.plan is not None
        p = self.plan
        return _fingerprint(role="passive", mode=p.mode, rows=p.rows, ids=p.id_digest,
                            bs=p.batch_size, seed=p.seed, k=p.k, d=self.d, lr=p.lr_interactive,
                            mu=p.momentum)

    def _peers(self) -> list[str]:
        return [self.active]

    def _reset_state(self) -> Callable[[], None]:
        model, opt = copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict())

        def reset() -> None:
            self.model.load_state_dict(model)
            self.opt.load_state_dict(opt)
            self.layer, self.plan, self.best, self.best_epoch = None, None, None, -1
            self._cmd = 0

        return reset

    def _setup(self) -> None:
        c = self.cfg
        self._handshake()
        plan = self._recv(self.active, self._tag(0, "plan"), TrainPlan)
        error = ""
        if plan.rows != len(self.x):
            error = (f"row counts differ: {self.active} has {plan.rows} aligned rows, "
                     f"{self.party.name} has {len(self.x)}; run vfl.align on both sides first")
        elif plan.id_digest != id_digest(self.ids, len(self.x)):
            error = (f"aligned row IDs differ between {self.active} and {self.party.name} "
                     "(same count, different IDs or order); both must use vfl.align's output")
        elif plan.mode != c.mode:
            error = (f"{self.active} asks for mode {plan.mode!r}, {self.party.name} "
                     f"is configured for {c.mode!r}")
        if error:
            self.party.send(self.active, self._tag(0, "plan_ack"),
                            PlanAck(d=0, checkpoints=[], w_init=np.zeros((0, 0)), error=error))
            raise ConfigError(error)
        self.plan = plan
        w_init = init_interactive(self.d, plan.k, self.w_seed)
        self.party.send(self.active, self._tag(0, "plan_ack"), PlanAck(
            d=self.d, checkpoints=self.ckpt.epochs(),
            w_init=w_init if c.mode == "plaintext" else np.zeros((0, 0)), error=""))
        if c.mode == "he":
            self.layer = PassiveLayer(c.ckks, w_init, lr=plan.lr_interactive,
                                      momentum=plan.momentum)
            self.layer.on_public_context(self._recv(self.active, self._tag(0, "ctx_a"),
                                                    PublicContext))
            self.party.send(self.active, self._tag(0, "ctx_p"), self.layer.public_context())

    def _next_command(self) -> EpochCommand:
        cmd = self._recv(self.active, self._tag(self._cmd, "cmd", "vfl.ctl"), EpochCommand)
        self._cmd += 1
        return cmd

    def _snapshot(self) -> dict[str, Any]:
        shares = {}
        if self.layer is not None:
            shares = {"w": torch.from_numpy(self.layer.w.copy()),
                      "m": torch.from_numpy(self.layer.m.copy())}
        return {"model": copy.deepcopy(self.model.state_dict()), "shares": shares}

    def _restore_snapshot(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        if self.layer is not None and snap["shares"]:
            self.layer.w = snap["shares"]["w"].numpy().astype(np.float64).copy()
            self.layer.m = snap["shares"]["m"].numpy().astype(np.float64).copy()

    def _bottom(self, idx: np.ndarray, x: np.ndarray) -> tuple[torch.Tensor, FloatArray]:
        vb = self.cfg.ckks.value_bound
        h_t = self.model(torch.from_numpy(x[idx])).clamp(-vb, vb)
        return h_t, h_t.detach().double().numpy()

    def _forward(self, tag: Tag, h: FloatArray, train: bool) -> None:
        if self.cfg.mode == "he" and self.layer is None:  # never fall back to plaintext
            raise LocalProtocolError(f"{self.party.name}: HE mode needs fit() (key exchange) first")
        if self.layer is not None:
            self.party.send(self.active, _msg(tag, "act"), self.layer.forward(h, train=train))
            m2 = self._recv(self.active, _msg(tag, "fwd"), MaskedForward)
            self.party.send(self.active, _msg(tag, "share"), self.layer.on_masked_forward(m2))
        else:
            self.party.send(self.active, _msg(tag, "act"), PlainActivations(h=h))

    def _train_step(self, epoch: int, step: int, idx: np.ndarray) -> None:
        tag = self._tag(epoch, f"t{step}")
        h_t, h = self._bottom(idx, self.x)
        self._forward(tag, h, train=True)
        if self.layer is not None:
            m5 = self._recv(self.active, _msg(tag, "grad"), MaskedGradient)
            self.party.send(self.active, _msg(tag, "back"), self.layer.on_masked_gradient(m5))
            g = self.layer.on_grad_share(self._recv(self.active, _msg(tag, "gshare"), GradShare))
        else:
            g = self._recv(self.active, _msg(tag, "grad"), PlainGradient).g
            if g.shape != h.shape:
                raise RemoteProtocolError(f"gradient of shape {g.shape}", peer=self.active)
        if self.on_gradient is not None:
            self.on_gradient(idx, g)
        self.opt.zero_grad()
        h_t.backward(torch.from_numpy(g).float())
        self.opt.step()

    def _serve(self, tag_of: Callable[[int], Tag], rows: int, x: np.ndarray, bs: int) -> None:
        self.model.eval()
        with torch.no_grad():
            for b, lo in enumerate(range(0, rows, bs)):
                idx = np.arange(lo, min(rows, lo + bs))
                _, h = self._bottom(idx, x)
                self._forward(tag_of(b), h, train=False)
        self.model.train()

    def fit(self) -> TrainResult:
        """Follow the active party's plan until it says stop; restores the best epoch.

        If the active party dies mid-run, waits ``rejoin_s`` for it and resumes.
        """
        if self.loaded:
            raise LocalProtocolError(f"{self.party.name}: a model from load_model() only scores; "
                                     "build a new PassiveTrainer to train")
        return self._fit_with_rejoin(self._fit_once)

    def _fit_once(self) -> TrainResult:
        where = "setup"
        try:
            self._setup()
            assert self.plan is not None
            plan = self.plan
            train, val = split_rows(plan.rows, plan.val_fraction, plan.seed)
            resumed = -1
            while True:
                cmd = self._next_command()
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
                end = self._recv(self.active, self._tag(epoch, "end", "vfl.ctl"), EpochEnd)
                if end.best_epoch == epoch:
                    self.best_epoch, self.best = epoch, self._snapshot()
                self.ckpt.save(epoch, {"fingerprint": self._fp(), "epoch": epoch,
                                       **self._snapshot(), "opt": self.opt.state_dict(),
                                       "best_epoch": self.best_epoch, "best": self.best})
                self.party.send(self.active, self._tag(epoch, "ack", "vfl.ctl"), Ack(epoch=epoch))
                self._emit("epoch", epoch=epoch)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, where) from e

    def save_model(self, path: str | Path) -> None:
        """This party's half (atomically): its bottom model and, in HE mode, its share
        ``W_P`` (never ``W_A``, the momentum or any key); useless without the peers'."""
        if self.run_id is None:
            raise LocalProtocolError(f"{self.party.name}: save_model() needs a finished fit()")
        w = self.layer.w if self.layer is not None else self._loaded_w
        shares = {"w": torch.from_numpy(w.copy())} if w is not None else {}
        state = {"format": MODEL_FORMAT, "role": "passive", "party": self.party.name,
                 "mode": self.cfg.mode, "run_id": self.run_id, "k": self.k, "d": self.d,
                 "n_features": self.n_features, "peers": [self.active],
                 "model": self.model.state_dict(), "shares": shares}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

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
        st = _read_model(path, "passive", party.name, config)
        cfg = config or TrainConfig(mode=st["mode"])
        _load_weights(model, st["model"], path)
        n, d = int(st["n_features"]), int(st["d"])
        self = cls(party, str(st["peers"][0]), model, np.zeros((2, n), np.float32), config=cfg,
                   on_event=on_event)
        if self.d != d:
            raise ConfigError(f"{path}: saved with output width d={d}, the model gives {self.d}")
        self.k = int(st["k"])
        if cfg.mode == "he":
            w = st["shares"]["w"].numpy().astype(np.float64)
            if w.shape != (d, self.k):
                raise ConfigError(f"{path}: interactive share of shape {w.shape}")
            self._loaded_w = w
        self.run_id = str(st["run_id"])
        self.loaded = True
        return self

    def _open(self) -> None:
        """Answer the active party's ScoreHello: refuse halves of another run, fresh HE keys."""
        c = self.cfg
        self._handshake("vfl.score")
        tag = self._tag(0, "hello", "vfl.open")
        hello = self._recv(self.active, tag, ScoreHello)
        error = ""
        if hello.run_id != self.run_id:
            error = (f"the model halves come from different training runs: {self.active} "
                     f"loaded model {hello.run_id[:12]}, {self.party.name} loaded model "
                     f"{(self.run_id or '')[:12]}; load the two files saved by the same fit()")
        elif hello.mode != c.mode:
            error = (f"{self.active} scores in mode {hello.mode!r}, {self.party.name}'s model "
                     f"is for mode {c.mode!r}")
        elif hello.k != self.k:
            error = f"interactive width k differs: {self.active} {hello.k}, {self.party.name} {self.k}"
        self.party.send(self.active, tag.at("hello_ack"),
                        ScoreHelloAck(run_id=self.run_id or "", d=self.d, error=error))
        if error:
            raise ConfigError(error)
        if c.mode == "he":
            assert self._loaded_w is not None
            self.layer = PassiveLayer(c.ckks, self._loaded_w, lr=c.lr_interactive,
                                      momentum=c.momentum)  # fresh keys; our share W_P
            self.layer.on_public_context(self._recv(self.active, tag.at("ctx_a"), PublicContext))
            self.party.send(self.active, tag.at("ctx_p"), self.layer.public_context())
        self._opened = True

    def predict(self, x: npt.ArrayLike, *, ids: Sequence[str] | None = None) -> None:
        """Take part in the active party's scoring of aligned rows (learns no scores).

        After ``load_model`` the first call first answers the active party's scoring
        session (model IDs checked, fresh CKKS keys in HE mode).
        """
        xx = _check_features(x, f"{self.party.name} features")
        _check_width(xx, self.n_features, self.party.name)
        if self.loaded and not self._opened:
            try:
                self._open()
            except (PartyUnavailable, PartyTimeout) as e:
                raise self._interrupted(e, "opening the scoring session") from e
        if self.cfg.mode == "he" and self.layer is None:
            raise LocalProtocolError(f"{self.party.name}: HE mode needs fit() (key exchange) first")
        r = self._score_round
        self._score_round += 1
        try:
            req = self._recv(self.active, self._tag(r, "req", "vfl.score"), ScoreRequest)
            ok = req.rows == len(xx) and req.id_digest == id_digest(ids, len(xx))
            self.party.send(self.active, self._tag(r, "ok", "vfl.score"), Ack(epoch=0 if ok else 1))
            if not ok:
                raise ConfigError(
                    f"scoring rows differ: {self.active} has {req.rows} rows, "
                    f"{self.party.name} has {len(xx)} (or different IDs)"
                )
            self._serve(self._tags(r, "s", "vfl.score"), len(xx), xx,
                        req.batch_size)
        except (PartyUnavailable, PartyTimeout) as e:
            raise self._interrupted(e, "scoring") from e


_ = asdict
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
