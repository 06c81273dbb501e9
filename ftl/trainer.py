"""Runners over ``party.Party``: ``train_ftl`` (training, checkpoints) and ``predict_ftl``.

They only move ``ftl.protocol`` messages and apply deadlines; the cryptography
and the checks live in the state machines. Checkpoints hold the party's own
model, optimiser state and history (never keys: a resumed run makes fresh key
pairs) and are written atomically after each epoch; a run restarted with the
same ``checkpoint_dir`` resumes after the last completed epoch (both parties must
hold checkpoints of the same epoch).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ftl.data import GuestData, HostData
from ftl.messages import (
    Done,
    EncPhi,
    GuestBackward,
    GuestForward,
    Hello,
    HostBackward,
    HostForward,
    PredictMasked,
    PredictRequest,
    PredictRounds,
    PredictSums,
)
from ftl.model import FtlParams, GuestModel, HostModel
from ftl.protocol import FtlGuest, FtlHost, check_roles
from he.params import CkksParams
from party import Party, Tag
from party.errors import ConfigError
from party.files import atomic_path
from party.handshake import open_run, run_with_rejoin

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
CHECKPOINT_VERSION = 1


@dataclass
class FtlResult:
    """One party's outcome of ``train_ftl``."""

    role: str
    model: GuestModel | HostModel
    epoch_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_bytes: list[int] = field(default_factory=list)  # sent + received
    decryptions: int = 0
    rotations: int = 0


def _ckpt_path(directory: str | Path, role: str) -> Path:
    return Path(directory) / f"ftl-{role}.pt"


def save_checkpoint(path: Path, model: GuestModel | HostModel, epoch: int,
                    res: FtlResult, n_features: int) -> None:
    """Write this party's state atomically (torch format; loaded with weights_only=True)."""
    state: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "params": model.params.as_dict(),
        "n_features": n_features,
        "epoch": epoch,
        "net": model.net.state_dict(),
        "opt": model.opt.state_dict(),
        "epoch_losses": list(res.epoch_losses),
        "step_losses": list(res.step_losses),
    }
    if isinstance(model, GuestModel) and model.phi_final is not None:
        state["phi_final"] = torch.as_tensor(model.phi_final)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model: GuestModel | HostModel, n_features: int,
                    res: FtlResult) -> int:
    """Restore our own checkpoint into ``model``; returns the next epoch to train."""
    state = torch.load(path, weights_only=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path}: unknown checkpoint version {state.get('version')!r}")
    if state["params"] != model.params.as_dict():
        raise ConfigError(f"{path}: checkpoint was made with other FTL parameters")
    if state["n_features"] != n_features:
        raise ConfigError(f"{path}: checkpoint has {state['n_features']} feature columns, "
                          f"the data {n_features}")
    model.net.load_state_dict(state["net"])
    model.opt.load_state_dict(state["opt"])
    res.epoch_losses = [float(v) for v in state["epoch_losses"]]
    res.step_losses = [float(v) for v in state["step_losses"]]
    if isinstance(model, GuestModel) and "phi_final" in state:
        model.phi_final = state["phi_final"].numpy()
    return int(state["epoch"]) + 1


def _bytes(party: Party) -> int:
    s = party.transport.stats
    return int(s.bytes_sent + s.bytes_received)


def train_ftl(party: Party, peer: str, *, role: str, x: FloatArray, overlap: Any,
              y: FloatArray | None = None, params: FtlParams | None = None,
              ckks: CkksParams | None = None, checkpoint_dir: str | Path | None = None,
              session: str = "ftl", rng: np.random.Generator | None = None,
              rejoin_s: float = 300.0) -> FtlResult:
    """Train FTL as the guest (A, with labels ``y``) or the host (B, no labels).

    Args:
        party: this side of the federation.
        peer: the other party's name.
        role: "guest" (holds labels) or "host".
        x: this party's feature matrix (already scaled, e.g. ``ftl.data.preprocess``).
        overlap: this party's row index of each shared customer, in PSI order.
        y: the guest's 0/1 labels (one per row of ``x``); None on the host.
        params: must be equal on both sides (checked at the start).
        ckks: CKKS parameters (``he.CkksParams``), equal on both sides.
        checkpoint_dir: where to write/resume this party's checkpoint.
        session: distinguishes runs sharing a transport.
        rejoin_s: when the peer's process dies without a word (kill -9), wait this long
            for it to be restarted, then run again from this party's checkpoint (from
            the start without one); 0: fail at once. A peer that stops on purpose tells
            us (PeerAborted) and we stop at once; so do we, if we fail.

    The run opens with the confirmed handshake of :mod:`party.handshake`.

    Returns:
        This party's trained model and per-epoch losses, seconds and bytes.

    Raises:
        ConfigError: labels on the wrong side, no overlap, mismatched parameters,
            overlap sizes or feature dimensions.
        PartyTimeout, PartyUnavailable, RemoteProtocolError: the peer failed.
    """
    check_roles(role, y)
    return run_with_rejoin(
        party,
        lambda: _train_once(party, peer, role=role, x=x, overlap=overlap, y=y, params=params,
                            ckks=ckks, checkpoint_dir=checkpoint_dir, session=session, rng=rng),
        peers=[peer], session=session, rejoin_s=rejoin_s, tell_on_peer_abort=False,
        then="running again from this party's checkpoint")


def _train_once(party: Party, peer: str, *, role: str, x: FloatArray, overlap: Any,
                y: FloatArray | None, params: FtlParams | None, ckks: CkksParams | None,
                checkpoint_dir: str | Path | None, session: str,
                rng: np.random.Generator | None) -> FtlResult:
    params = params or FtlParams()
    sm: FtlGuest | FtlHost
    if role == "guest":
        assert y is not None
        gdata = GuestData(np.asarray(x), np.asarray(y), np.asarray(overlap))
        gmodel = GuestModel(gdata.x.shape[1], params)
        res = FtlResult(role, gmodel)
        start = _resume(checkpoint_dir, role, gmodel, gdata.x.shape[1], res)
        sm = FtlGuest(gdata, params, ckks=ckks, model=gmodel, start_epoch=start, rng=rng)
    else:
        hdata = HostData(np.asarray(x), np.asarray(overlap))
        hmodel = HostModel(hdata.x.shape[1], params)
        res = FtlResult(role, hmodel)
        start = _resume(checkpoint_dir, role, hmodel, hdata.x.shape[1], res)
        sm = FtlHost(hdata, params, ckks=ckks, model=hmodel, start_epoch=start, rng=rng)
    n_features = int(np.asarray(x).shape[1])
    timeout = params.timeout_s
    open_run(party, [peer], protocol="ftl", session=session, info={}, timeout_s=timeout)
    tag = Tag("ftl", session, 0, "hello")
    party.send(peer, tag, sm.hello())
    sm.on_hello(party.recv(peer, tag, Hello, timeout_s=timeout))
    for epoch in range(start, params.epochs):
        t0, b0 = time.perf_counter(), _bytes(party)
        losses: list[float] = []
        if isinstance(sm, FtlHost):
            for step in range(sm.steps(epoch)):
                tg = Tag("ftl", session, epoch, f"{step}")
                party.send(peer, tg.at(f"{step}/host_forward"), sm.begin_step(epoch, step))
                gf = party.recv(peer, tg.at(f"{step}/guest_forward"), GuestForward,
                                timeout_s=timeout)
                party.send(peer, tg.at(f"{step}/host_backward"), sm.on_guest_forward(gf))
                gb = party.recv(peer, tg.at(f"{step}/guest_backward"), GuestBackward,
                                timeout_s=timeout)
                losses.append(sm.on_guest_backward(gb))
        else:
            for step in range(sm.steps(epoch)):
                tg = Tag("ftl", session, epoch, f"{step}")
                hf = party.recv(peer, tg.at(f"{step}/host_forward"), HostForward,
                                timeout_s=timeout)
                party.send(peer, tg.at(f"{step}/guest_forward"), sm.on_host_forward(hf))
                hb = party.recv(peer, tg.at(f"{step}/host_backward"), HostBackward,
                                timeout_s=timeout)
                out = sm.on_host_backward(hb)
                party.send(peer, tg.at(f"{step}/guest_backward"), out)
                losses.append(out.loss)
        res.step_losses.extend(losses)
        res.epoch_losses.append(float(np.mean(losses)))
        res.epoch_seconds.append(time.perf_counter() - t0)
        res.epoch_bytes.append(_bytes(party) - b0)
        if isinstance(sm, FtlGuest) and epoch == params.epochs - 1:
            sm.finish()
        if checkpoint_dir is not None:
            save_checkpoint(_ckpt_path(checkpoint_dir, role), sm.model, epoch, res, n_features)
        log.info("ftl %s epoch %d loss %.5f (%.2f s)", role, epoch, res.epoch_losses[-1],
                 res.epoch_seconds[-1])
    if isinstance(sm, FtlGuest) and sm.model.phi_final is None:
        sm.finish()
    res.decryptions = sm.keys.decryptions
    res.rotations = sm.rotations
    party.send(peer, Tag("ftl", session, params.epochs, "done"), Done(epochs=params.epochs))
    party.recv(peer, Tag("ftl", session, params.epochs, "done"), Done, timeout_s=timeout)
    return res


def _resume(checkpoint_dir: str | Path | None, role: str, model: GuestModel | HostModel,
            n_features: int, res: FtlResult) -> int:
    if checkpoint_dir is None:
        return 0
    path = _ckpt_path(checkpoint_dir, role)
    if not path.exists():
        return 0
    start = load_checkpoint(path, model, n_features, res)
    log.info("ftl %s: resuming at epoch %d from %s", role, start, path)
    return start


def predict_ftl(party: Party, peer: str, *, role: str, model: GuestModel | HostModel,
                x: FloatArray | None = None, ckks: CkksParams | None = None,
                session: str = "ftl-predict", timeout_s: float = 300.0,
                rows_per_round: int = 8192) -> FloatArray | None:
    """Score B's rows with the trained FTL model, as a protocol between the parties.

    The host passes its rows ``x`` and gets their scores Φu_B (logits: (rows,) for
    binary labels, (rows, C) one-vs-rest for C > 2 classes); the guest passes its
    model (with ``phi_final``) and gets None. A sees only masked values; B learns
    the scores of its own rows.
    """
    if role not in ("guest", "host"):
        raise ConfigError(f"role must be 'guest' or 'host', got {role!r}")
    params = model.params
    dummy_ov = np.zeros(1, dtype=np.int64)
    if role == "host":
        if x is None:
            raise ConfigError("the host must pass the rows to score")
        if not isinstance(model, HostModel):
            raise ConfigError("the host needs its HostModel")
        hs = FtlHost(HostData(np.asarray(x, dtype=np.float64), dummy_ov),
                     params, ckks=ckks, model=model, predict_only=True)
        open_run(party, [peer], protocol="ftl.predict", session=session, timeout_s=timeout_s)
        tag = Tag("ftl.predict", session, 0, "hello")
        party.send(peer, tag, hs.hello())
        hs.on_hello(party.recv(peer, tag, Hello, timeout_s=timeout_s))
        xs = np.asarray(x, dtype=np.float64)
        n_rounds = -(-xs.shape[0] // rows_per_round)
        party.send(peer, Tag("ftl.predict", session, 0, "rounds"), PredictRounds(rounds=n_rounds))
        out = []
        for r in range(n_rounds):
            tg = Tag("ftl.predict", session, r + 1, "")
            party.send(peer, tg.at("request"),
                       hs.predict_request(xs[r * rows_per_round:(r + 1) * rows_per_round]))
            ep = party.recv(peer, tg.at("enc_phi"), EncPhi, timeout_s=timeout_s)
            party.send(peer, tg.at("masked"), hs.on_enc_phi(ep))
            ps = party.recv(peer, tg.at("sums"), PredictSums, timeout_s=timeout_s)
            out.append(hs.on_predict_sums(ps))
        return np.concatenate(out)
    if not isinstance(model, GuestModel) or model.phi_final is None:
        raise ConfigError("the guest needs its trained GuestModel (with phi_final)")
    gs = FtlGuest(_guest_stub(model.net.n_features), params, ckks=ckks, model=model,
                  predict_only=True)
    open_run(party, [peer], protocol="ftl.predict", session=session, timeout_s=timeout_s)
    tag = Tag("ftl.predict", session, 0, "hello")
    party.send(peer, tag, gs.hello())
    gs.on_hello(party.recv(peer, tag, Hello, timeout_s=timeout_s))
    n_rounds = party.recv(peer, Tag("ftl.predict", session, 0, "rounds"), PredictRounds,
                          timeout_s=timeout_s).rounds  # at most MAX_PREDICT_ROUNDS (codec)
    for r in range(n_rounds):
        tg = Tag("ftl.predict", session, r + 1, "")
        req = party.recv(peer, tg.at("request"), PredictRequest, timeout_s=timeout_s)
        if req.rows > rows_per_round:
            raise ConfigError(f"host asked to score {req.rows} rows in one round "
                              f"(limit {rows_per_round})")
        party.send(peer, tg.at("enc_phi"), gs.on_predict_request(req))
        pm = party.recv(peer, tg.at("masked"), PredictMasked, timeout_s=timeout_s)
        party.send(peer, tg.at("sums"), gs.on_predict_masked(pm))
    return None


def _guest_stub(n_features: int) -> GuestData:
    """Placeholder rows for a prediction-only guest (no training data is touched)."""
    x = np.zeros((2, n_features))
    return GuestData(x, np.array([0.0, 1.0]), np.zeros(1, dtype=np.int64))


__all__ = ["FtlResult", "load_checkpoint", "predict_ftl", "save_checkpoint", "train_ftl"]
