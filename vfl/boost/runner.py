"""Thin runners: the SecureBoost machines over a :class:`party.Party`, checkpoints and saved halves.

    model = train_active(party, ["fintech"], bins, y, BoostParams(n_trees=20), checkpoint_dir="ck")
    booster = train_passive(party, "bank", bins, checkpoint_dir="ck", binner=binner)
    save_active("bank.boost.json", model, binner);  save_passive("fintech.boost.json", booster)
    scores = predict_active(party, load_active("bank.boost.json")[0], bins_new)
    predict_passive(party, "bank", load_passive("fintech.boost.json"), bins_new)

Every run opens with the confirmed handshake (``party.handshake.open_run``, one per passive
party); a party that fails tells its peers (``tell_peers``). With ``checkpoint_dir`` each party
saves its half after every complete tree: a peer that vanishes without a word (kill -9) is
waited for up to ``rejoin_s`` (restart only it), and a run stopped on purpose resumes when
both are started again with the same directories, in each case from the last tree both have.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from party.errors import ConfigError, PartyUnavailable, PeerAborted, TesseraError
from party.files import write_atomic
from party.handshake import open_run, tell_peers
from party.party import Party
from party.transport import Tag
from vfl.boost.binning import Binner
from vfl.boost.crypto import make_cipher
from vfl.boost.messages import Finish
from vfl.boost.params import BoostParams
from vfl.boost.protocol import (
    ActiveBooster,
    ActiveModel,
    Bins,
    Exchange,
    PassiveBooster,
)
from vfl.boost.tree import Node

log = logging.getLogger(__name__)

PROTOCOL = "vfl.boost"
ACTIVE_FORMAT = "tessera.boost.active/1"
PASSIVE_FORMAT = "tessera.boost.passive/1"
T = TypeVar("T")


def _gone(e: BaseException) -> bool:
    """A peer that vanished without a word (kill -9, a lost machine): it may come back."""
    return isinstance(e, PartyUnavailable) and not isinstance(e, PeerAborted)


def _drive_active(party: Party, gen: Generator[Exchange, dict[str, Any], Any], session: str,
                  timeout_s: float, *, rejoin: bool = False) -> Any:
    seq: dict[str, int] = defaultdict(int)
    try:
        ex = next(gen)
        while True:
            rounds = {}
            for dst, msg in ex.sends.items():
                rounds[dst] = seq[dst]
                seq[dst] += 1
                party.send(dst, Tag(PROTOCOL, session, rounds[dst], "a2p"), msg)
            replies = {src: party.recv(src, Tag(PROTOCOL, session, rounds[src], "p2a"), timeout_s=timeout_s)
                       for src in ex.expect}
            ex = gen.send(replies)
    except StopIteration as e:
        return e.value
    except BaseException as e:
        if not (rejoin and _gone(e)):
            tell_peers(party, session, e)
        raise


def _serve_passive(party: Party, active: str, booster: PassiveBooster, session: str, timeout_s: float,
                   last: type, *, rejoin: bool = False) -> None:
    r = 0
    try:
        while True:
            msg = party.recv(active, Tag(PROTOCOL, session, r, "a2p"), timeout_s=timeout_s)
            reply = booster.handle(msg)
            if reply is not None:
                party.send(active, Tag(PROTOCOL, session, r, "p2a"), reply)
            r += 1
            if isinstance(msg, last):
                return
    except BaseException as e:
        if not (rejoin and _gone(e)):
            tell_peers(party, session, e)
        raise


def _rejoining(party: Party, checkpoint_dir: str | os.PathLike[str] | None, rejoin_s: float,
               once: Callable[[bool], T]) -> T:
    """``once(rejoin)``; with ``checkpoint_dir`` and ``rejoin_s > 0`` (``rejoin``), a peer that
    vanishes (:func:`_gone`) is waited for and ``once`` runs again: one ``rejoin_s`` window in all."""
    rejoin = bool(checkpoint_dir) and rejoin_s > 0
    deadline = time.monotonic() + rejoin_s
    while True:
        try:
            return once(rejoin)
        except PartyUnavailable as e:
            if not (rejoin and _gone(e)):
                raise
            _wait_rejoin(party, e, deadline)


def _wait_rejoin(party: Party, e: PartyUnavailable, deadline: float) -> None:
    left = deadline - time.monotonic()
    wait_peer = getattr(party.transport, "wait_peer", None)
    if wait_peer is None or left <= 0:
        raise e
    log.warning("%s: %s is gone (%s); waiting up to %.0f s for it to rejoin, then resuming from the last "
                "complete tree", party.name, e.peer, e.reason, left)
    time.sleep(min(0.5, left))  # the next attempt's handshake fails fast on a still-dead incarnation: no spin
    wait_peer(e.peer, timeout_s=max(0.0, deadline - time.monotonic()))


def _open(party: Party, peers: list[str], session: str, info: dict[str, Any], timeout_s: float) -> None:
    for p in peers:
        open_run(party, [p], protocol=PROTOCOL, session=session, info=info, timeout_s=timeout_s)


# ---------------------------------------------------------------------- training


def train_active(party: Party, passives: list[str], bins: Bins, y: Any, params: BoostParams, *,
                 scheme: str = "ou", key_bits: int = 2048, session: str = "boost", timeout_s: float = 600.0,
                 checkpoint_dir: str | os.PathLike[str] | None = None, binner: Binner | None = None,
                 rejoin_s: float = 300.0) -> ActiveModel:
    """Train as the active party; returns its half (also checkpointed per tree if asked).

    With ``checkpoint_dir``, a passive party that vanishes (kill -9, a lost machine) is waited
    for up to ``rejoin_s``; restart only it and both resume from the last complete tree.
    """
    return _rejoining(party, checkpoint_dir, rejoin_s, lambda rejoin: _train_active_once(
        party, passives, bins, y, params, scheme=scheme, key_bits=key_bits, session=session,
        timeout_s=timeout_s, checkpoint_dir=checkpoint_dir, binner=binner, rejoin=rejoin))


def _train_active_once(party: Party, passives: list[str], bins: Bins, y: Any, params: BoostParams, *,
                       scheme: str, key_bits: int, session: str, timeout_s: float,
                       checkpoint_dir: str | os.PathLike[str] | None, binner: Binner | None,
                       rejoin: bool) -> ActiveModel:
    ck = Path(checkpoint_dir) / f"{party.name}.boost.ckpt.json" if checkpoint_dir else None
    model = None
    try:  # bad input fails fast at the peers too, not at their handshake timeout
        if ck is not None and ck.exists():
            model, _ = load_active(ck)
            if model.params != params or model.passives != list(passives):
                raise ConfigError(f"checkpoint {ck} is of another training (parameters or parties differ)")
        booster = ActiveBooster(bins, y, passives, params, make_cipher(scheme, key_bits), name=party.name,
                                model=model,
                                on_tree_end=(lambda m: save_active(ck, m, binner, checkpoint=True)) if ck else None)
    except BaseException as e:
        tell_peers(party, session, e)
        raise
    _open(party, list(passives), session, {"rows": len(bins), "role": "boost"}, timeout_s)
    trained: ActiveModel = _drive_active(party, booster.train(), session, timeout_s, rejoin=rejoin)
    trained.tree_seconds = list(booster.tree_seconds)
    return trained


def train_passive(party: Party, active: str, bins: Bins, *, session: str = "boost", timeout_s: float = 600.0,
                  checkpoint_dir: str | os.PathLike[str] | None = None, binner: Binner | None = None,
                  min_rows_floor: int = 1, salt: int = 1, rejoin_s: float = 300.0) -> PassiveBooster:
    """Serve the active party's training as a passive party; returns this party's half.

    With ``checkpoint_dir``, an active party that vanishes is waited for up to ``rejoin_s``.
    """
    return _rejoining(party, checkpoint_dir, rejoin_s, lambda rejoin: _train_passive_once(
        party, active, bins, session=session, timeout_s=timeout_s, checkpoint_dir=checkpoint_dir,
        binner=binner, min_rows_floor=min_rows_floor, salt=salt, rejoin=rejoin))


def _train_passive_once(party: Party, active: str, bins: Bins, *, session: str, timeout_s: float,
                        checkpoint_dir: str | os.PathLike[str] | None, binner: Binner | None,
                        min_rows_floor: int, salt: int, rejoin: bool) -> PassiveBooster:
    ck = Path(checkpoint_dir) / f"{party.name}.boost.ckpt.json" if checkpoint_dir else None
    table, done = None, 0
    try:
        if ck is not None and ck.exists():
            old = load_passive(ck)
            table, done = old.table, old.done_trees
        booster = PassiveBooster(bins, name=party.name, salt=salt, table=table, done_trees=done, binner=binner,
                                 min_rows_floor=min_rows_floor,
                                 on_tree_end=(lambda b: save_passive(ck, b)) if ck else None)
    except BaseException as e:
        tell_peers(party, session, e)
        raise
    _open(party, [active], session, {"rows": len(bins), "role": "boost"}, timeout_s)
    _serve_passive(party, active, booster, session, timeout_s, Finish, rejoin=rejoin)
    return booster


# ----------------------------------------------------------------------- scoring


def predict_active(party: Party, model: ActiveModel, bins: Bins, *, session: str = "boost-score",
                   timeout_s: float = 600.0) -> np.ndarray:
    """Score rows aligned with the passive parties' scoring rows (they run :func:`predict_passive`)."""
    booster = _scoring_booster(party.name, model, bins)
    _open(party, list(model.passives), session, {"rows": len(bins), "role": "boost-score", "run": model.run_id},
          timeout_s)
    return _drive_active(party, booster.predict(bins), session, timeout_s)  # type: ignore[no-any-return]


def predict_passive(party: Party, active: str, booster: PassiveBooster, bins: Bins, *,
                    session: str = "boost-score", timeout_s: float = 600.0) -> None:
    """Answer one scoring request: this party's "goes left" bits for its records on ``bins``."""
    from vfl.boost.messages import PredictRequest

    scorer = PassiveBooster(bins, name=booster.name, table=booster.table, done_trees=booster.done_trees)
    scorer.run_id = booster.run_id
    _open(party, [active], session, {"rows": len(bins), "role": "boost-score", "run": booster.run_id}, timeout_s)
    _serve_passive(party, active, scorer, session, timeout_s, PredictRequest)


def _scoring_booster(name: str, model: ActiveModel, bins: Bins) -> ActiveBooster:
    y = np.zeros(len(bins))
    b = ActiveBooster(bins, y, model.passives, model.params, make_cipher("plaintext"), name=name, model=model)
    return b


def export_active(party: Party, model: ActiveModel, *, consent: bool, binner: Binner | None,
                  session: str = "boost-export", timeout_s: float = 600.0) -> dict[str, Any]:
    """Ask each passive party for its thresholds and build the XGBoost JSON model (``vfl.boost.export``)."""
    from vfl.boost.export import to_xgboost_json

    if not consent:
        raise ConfigError("a plaintext export needs the active party's explicit consent (consent=True)")
    booster = _scoring_booster(party.name, model, np.zeros((1, 0), np.int8))
    _open(party, list(model.passives), session, {"role": "boost-export", "run": model.run_id}, timeout_s)
    tables = _drive_active(party, booster.export(consent), session, timeout_s)
    return to_xgboost_json(model, binner, tables, active=party.name)


def export_passive(party: Party, active: str, booster: PassiveBooster, *, consent: bool,
                   session: str = "boost-export", timeout_s: float = 600.0) -> None:
    """Answer an export request; sends thresholds only with this party's ``consent``."""
    from vfl.boost.messages import ExportRequest

    booster.export_consent = consent
    _open(party, [active], session, {"role": "boost-export", "run": booster.run_id}, timeout_s)
    _serve_passive(party, active, booster, session, timeout_s, ExportRequest)


# ------------------------------------------------------------------ saved halves


def save_active(path: str | os.PathLike[str] | None, model: ActiveModel, binner: Binner | None, *,
                checkpoint: bool = False) -> None:
    """Write the active half atomically (JSON; a checkpoint also keeps the training rows' leaves)."""
    if path is None:
        return
    d: dict[str, Any] = {
        "format": ACTIVE_FORMAT, "params": model.params.to_dict(), "base": model.base,
        "trees": [[nd.to_dict() for nd in t] for t in model.trees],
        "table": {str(k): list(v) for k, v in model.table.items()},
        "passives": model.passives, "run_id": model.run_id,
        "binner": binner.to_dict() if binner is not None else None,
    }
    if checkpoint:
        d["leaf_rows"] = [base64.b64encode(np.asarray(lr, dtype="<i2").tobytes()).decode() for lr in model.leaf_rows]
    write_atomic(path, json.dumps(d))


def load_active(path: str | os.PathLike[str]) -> tuple[ActiveModel, Binner | None]:
    d = _read(path, ACTIVE_FORMAT)
    try:
        m = ActiveModel(BoostParams.from_dict(d["params"]), float(d["base"]),
                        [[Node.from_dict(nd) for nd in t] for t in d["trees"]],
                        {int(k): (int(v[0]), int(v[1])) for k, v in d["table"].items()},
                        [str(p) for p in d["passives"]], str(d["run_id"]),
                        [np.frombuffer(base64.b64decode(s), dtype="<i2").astype(np.int16) for s in d.get("leaf_rows", [])])
        binner = Binner.from_dict(d["binner"]) if d.get("binner") else None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"{path}: not a valid active SecureBoost half ({e})") from e
    return m, binner


def save_passive(path: str | os.PathLike[str] | None, booster: PassiveBooster) -> None:
    if path is None:
        return
    d = {"format": PASSIVE_FORMAT, "name": booster.name, "done_trees": booster.done_trees,
         "table": {str(k): list(v) for k, v in booster.table.items()}, "run_id": booster.run_id,
         "record_gain": {str(k): v for k, v in booster.record_gain.items()},
         "record_count": {str(k): v for k, v in booster.record_count.items()},
         "binner": booster.binner.to_dict() if booster.binner is not None else None}
    write_atomic(path, json.dumps(d))


def load_passive(path: str | os.PathLike[str]) -> PassiveBooster:
    """The saved passive half (a :class:`PassiveBooster` over no rows; ``binner`` bins new ones)."""
    d = _read(path, PASSIVE_FORMAT)
    try:
        b = PassiveBooster(np.zeros((0, 0), np.int8), name=str(d["name"]),
                           table={int(k): (int(v[0]), int(v[1]), int(v[2])) for k, v in d["table"].items()},
                           done_trees=int(d["done_trees"]),
                           binner=Binner.from_dict(d["binner"]) if d.get("binner") else None)
        b.run_id = str(d["run_id"])
        b.record_gain = {int(k): float(v) for k, v in d.get("record_gain", {}).items()}
        b.record_count = {int(k): int(v) for k, v in d.get("record_count", {}).items()}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"{path}: not a valid passive SecureBoost half ({e})") from e
    return b


def _read(path: str | os.PathLike[str], fmt: str) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read the SecureBoost half {path}: {e}") from e
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise ConfigError(f"{path} is not a {fmt} file")
    return d


__all__ = ["TesseraError", "export_active", "export_passive", "load_active", "load_passive", "predict_active",
           "predict_passive", "save_active", "save_passive", "train_active", "train_passive"]
