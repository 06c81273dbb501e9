"""Run PSI over a :class:`party.Party` (in memory or gRPC): one pipeline, one backend per protocol.

The pipeline (this module and :func:`run_psi`) owns what holds for every protocol:
normalisation and the duplicates policy (:mod:`psi.normalize`), the run handshake
(protocol, join type and settings agreed before anything runs), resume after a kill
(a checkpoint; a crashed peer is waited for and the run resumed or redone), the
completion exchange and the saved result, and the join layout (:mod:`psi.join`).
The backends only turn canonical keys into the indices of the shared keys in the
agreed order: :class:`psi.protocol.PsiSession` (ECDH, any number of parties),
:func:`psi.spu.run_spu_keys` (spu's RR22 / KKRT, two parties) and
:func:`psi.unbalanced.run_ub_keys` (mode ``"unbalanced"``: ECDH-OPRF with a cache).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from party.errors import (
    ConfigError,
    PartyUnavailable,
    RemoteProtocolError,
)
from party.handshake import RunConfirm, RunMismatch, confirm_digest, open_run, run_with_rejoin
from party.party import Party
from party.transport import Tag
from psi.checkpoint import Checkpoint, input_digest
from psi.group import GroupEngine
from psi.join import PLACEHOLDER, check_join, join_rows
from psi.messages import Count, Hello, Points
from psi.normalize import Duplicates, NormalizeReport, normalize_ids
from psi.protocol import PsiConfig, PsiResult, PsiSession, Send

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11+

log = logging.getLogger(__name__)

#: With a checkpoint: how long a surviving party waits for a crashed peer to rejoin.
REJOIN_S = 300.0


def _progress(total: int, enabled: bool | None, name: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="pt", unit_scale=True, desc=f"psi {name}", leave=False)


def run_psi_keys(
    party: Party,
    keys: Sequence[bytes],
    *,
    peers: Sequence[str] | None = None,
    config: PsiConfig | None = None,
    session: str = "psi",
    timeout_s: float = 600.0,
    workers: int | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    rejoin_s: float | None = None,
    keep_result: bool = False,
    link: Any = None,
    cache: str | os.PathLike[str] | None = None,
) -> PsiResult:
    """Private set intersection of canonical, unique ``keys`` with ``peers``.

    Args:
        party: this side of the federation.
        keys: canonical ID bytes (from :func:`psi.normalize.normalize_ids`), unique.
        peers: the other parties of the run (default: every peer of ``party``).
        config: shared settings; every party must pass the same.
        session: tag session; all parties of one run use the same.
        timeout_s: per-message deadline.
        workers: processes for group operations (default: all cores; 0: inline).
        progress: a tqdm bar on stderr (default: when stderr is a terminal).
        checkpoint: a private directory for this party's state; a run killed midway
            resumes from it (when every party passes its own), and it is emptied on
            success. Refused if made from other IDs or config.
        rejoin_s: with a checkpoint, how long to wait for a peer that crashed to come
            back (restarted with its own checkpoint) before resuming on our own
            (default 300 s; without a checkpoint a lost peer fails the run at once).
        keep_result: keep the finished result in the checkpoint (the caller clears it
            once its outputs are written; ``vfl.align`` does), so a party killed in
            between restarts into the result without its peers.
        link: for protocols rr22/kkrt, the :class:`psi.spu.SpuLink` (PSI endpoints and
            mutual-TLS files; ``SpuLink.from_federation(fed, name)``).
        cache: for mode ``"unbalanced"``, this party's private cache directory, kept
            from the offline phase to the online phases (:mod:`psi.unbalanced`).

    Every run opens with the confirmed handshake of :mod:`party.handshake` (live
    incarnations, public config) and then confirms the session salt; a party that
    fails tells its peers at once (they raise :class:`party.PeerAborted`).

    Returns:
        :class:`PsiResult`; ``rows`` index ``keys`` in the agreed order (with a join other
        than inner, laid out as :mod:`psi.join` says, -1 for a placeholder row).

    Raises:
        ConfigMismatch, RunMismatch: a peer runs with another config or another salt.
        PartyTimeout, PartyUnavailable: a peer stopped answering or disconnected.
        RemoteProtocolError: a peer sent something malformed (wrong sizes, invalid points).
    """
    peers = list(party.peers if peers is None else peers)
    if party.name in peers:
        raise ConfigError(f"{party.name!r} cannot run PSI with itself")
    config = config or PsiConfig()
    parties = sorted([party.name, *peers])
    check_join(config.join, parties, config.mode)
    left = config.left_party(parties)
    if config.protocol != "ecdh":
        from psi.spu import require_spu

        require_spu(config.protocol)  # before connecting: a clear error naming the extra
    res = _run_psi_retrying(party, keys, peers=peers, config=config, session=session,
                            timeout_s=timeout_s, workers=workers, progress=progress,
                            checkpoint=checkpoint, rejoin_s=rejoin_s, keep_result=keep_result,
                            link=link, cache=cache)
    res.protocol, res.join = config.protocol, config.join
    if config.join != "inner" and res.rows is not None:
        (peer,) = peers
        res.rows = join_rows(res.rows, len(keys), res.peer_sizes[peer], join=config.join,
                             is_left=party.name == left)
    return res


def _run_psi_retrying(
    party: Party,
    keys: Sequence[bytes],
    *,
    peers: list[str],
    config: PsiConfig,
    session: str,
    timeout_s: float,
    workers: int | None,
    progress: bool | None,
    checkpoint: str | os.PathLike[str] | None,
    rejoin_s: float | None,
    keep_result: bool,
    link: Any,
    cache: str | os.PathLike[str] | None = None,
) -> PsiResult:
    # without a checkpoint a lost peer fails the run at once (a window of 0 s)
    window = rejoin_s if rejoin_s is not None else REJOIN_S
    try:
        return run_with_rejoin(
            party,
            lambda: _run_psi_once(party, keys, peers=peers, config=config, session=session,
                                  timeout_s=timeout_s, workers=workers, progress=progress,
                                  checkpoint=checkpoint, keep_result=keep_result, link=link,
                                  cache=cache),
            peers=peers, session=session, rejoin_s=window if checkpoint is not None else 0.0,
            gone=lambda peer, cause: PartyUnavailable(
                peer, f"did not rejoin within the reconnect window ({cause.reason})"),
            tell_on_peer_abort=False, then="resuming from the checkpoint")
    except RunMismatch as e:  # the peers were told (the original error)
        if any(f"info.{k}" in str(e) for k in ("protocol", "join", "mode")):
            err = RunMismatch(f"{e} (None: the default, protocol 'ecdh', join 'inner' and a "
                              "mode other than 'unbalanced'; every party must pass the same "
                              "--protocol, --join and --mode)")
            err.peer = e.peer
            raise err from None
        raise


def _result_key(me: str, parties: list[str], config: PsiConfig, link: Any) -> dict[str, Any]:
    """The public settings a saved result belongs to (a result of other settings is not reused)."""
    if config.mode == "unbalanced":
        from psi.unbalanced import ub_public

        public = ub_public(config, parties)
    elif config.protocol == "ecdh":
        public = PsiSession(me, parties, [], config).public  # the config part only: no keys used
    else:
        from psi.spu import spu_public

        public = spu_public(config, parties, link) if link is not None else {}
    return {"run": config.run_info(parties), "psi": public}


def _finished(ckpt: Checkpoint, me: str, parties: list[str], keys: Sequence[bytes],
              config: PsiConfig, link: Any) -> PsiResult | None:
    """The saved result of this very run, if it finished before a kill (see save_result)."""
    saved = ckpt.load_result(digest=input_digest(keys), public=_result_key(me, parties, config, link))
    if saved is None:
        return None
    meta, rows = saved
    log.info("psi %s: the run finished before the restart; using its saved result", me)
    return PsiResult(rows=np.frombuffer(rows, dtype=np.int64).copy() if meta["has_rows"] else None,
                     size=meta["size"], own_size=meta["own_size"], peer_sizes=meta["peer_sizes"],
                     mode=meta["mode"], run_id=meta["run_id"], protocol=config.protocol)


def _run_psi_once(
    party: Party,
    keys: Sequence[bytes],
    *,
    peers: list[str],
    config: PsiConfig | None,
    session: str,
    timeout_s: float,
    workers: int | None,
    progress: bool | None,
    checkpoint: str | os.PathLike[str] | None,
    keep_result: bool = False,
    link: Any = None,
    cache: str | os.PathLike[str] | None = None,
) -> PsiResult:
    tag = Tag("psi", session, 0, "")
    config = config or PsiConfig()
    parties = sorted([party.name, *peers])
    ckpt = Checkpoint(checkpoint) if checkpoint is not None else None
    if ckpt is not None:
        done = _finished(ckpt, party.name, parties, keys, config, link)
        if done is not None:
            if not keep_result:
                ckpt.clear()
            return done
    if config.protocol != "ecdh" or config.mode == "unbalanced":
        if config.mode == "unbalanced":
            from psi.unbalanced import run_ub_keys

            res, transcript = run_ub_keys(party, keys, peers=peers, config=config, cache=cache,
                                          session=session, timeout_s=timeout_s, workers=workers)
        else:
            from psi.spu import run_spu_keys

            res, transcript = run_spu_keys(party, keys, peers=peers, config=config, link=link,
                                           session=session, timeout_s=timeout_s)
        _complete(party, peers, tag.at, transcript, timeout_s)
        _save_result(ckpt, keep_result, keys, _result_key(party.name, parties, config, link),
                     res, res.run_id)
        log.info("psi %s: %s run %s, %d own, peers %s, shared %s, %.1f s", party.name,
                 config.protocol, res.run_id, len(keys), res.peer_sizes, res.size,
                 res.backend.get("seconds", 0.0))
        return res
    engine = GroupEngine(workers)
    sess = PsiSession(party.name, [party.name, *peers], keys, config, engine=engine, checkpoint=ckpt)
    bar = None
    t0 = time.perf_counter()

    try:
        # who takes part (live incarnations) and the public config, confirmed before any PSI message
        run = open_run(party, peers, protocol="psi", session=session,
                       info={**config.run_info(parties), "psi": sess.public}, timeout_s=timeout_s)
        # Every message of the run is tagged with its run id. A survivor's send to a
        # crashed peer is held for the peer's next incarnation (the delivery contract);
        # under the old tag the restarted peer read that stale chunk as its run's first.
        at = run_steps(tag, run.run_id)

        def send(s: Send) -> None:
            party.send(s.dst, at(s.step), s.msg)

        for s in sess.hello():
            send(s)
        for p in sess.peers:
            sess.on_hello(p, party.recv(p, at("hello"), Hello, timeout_s=timeout_s))
        # every party derived the same session salt (hence DST), or nobody computes anything
        confirm_digest(party, peers, session=session, step=f"psi:salt:{run.run_id}",
                       digest=sess.salt_proof(), what="PSI session salt", timeout_s=timeout_s)
        chained = sum(sess.sizes[p] for p in sess.peers)
        bar = _progress(len(keys) + chained, progress, party.name)
        for s in sess.own_chunks():
            send(s)
            if bar is not None:
                bar.update(s.msg.count if isinstance(s.msg, Points) else 0)
        while not sess.done:
            src, step = sess.next_expected()
            kind: type[Points] | type[Count] = Count if step == "result" and sess.config.mode == "cardinality" else Points
            msg = party.recv(src, at(step), kind, timeout_s=timeout_s)
            for s in sess.receive(src, step, msg):
                send(s)
            if bar is not None and step.startswith("chain:") and isinstance(msg, Points):
                bar.update(msg.count)
    finally:
        engine.close()
        if bar is not None:
            bar.close()
    res = sess.result()
    # Completion: every party tells the others it has its result; a checkpoint is kept
    # until all have. A peer killed before that rejoins and both resume from their
    # checkpoints (the survivor re-sends what the peer lacks); afterwards the outcome is
    # saved, so a kill before the caller wrote its output restarts into the result
    # without the peers (who may have finished and left).
    _complete(party, peers, at, run.transcript, timeout_s)
    _save_result(ckpt, keep_result, keys, _result_key(party.name, parties, config, link), res,
                 run.run_id)
    res.worker_peak_rss_mb = engine.worker_peak_rss_mb
    res.run_id = run.run_id
    log.info(
        "psi %s: run %s, %d own, peers %s, shared %s, %.1f s",
        party.name, run.run_id, len(keys), res.peer_sizes, res.size, time.perf_counter() - t0,
    )
    return res


def run_steps(tag: Tag, run_id: str) -> Callable[[str], Tag]:
    """The tags of one confirmed run: ``step`` prefixed by the run id (see _run_psi_once)."""
    return lambda step: tag.at(f"{run_id}:{step}")


def _complete(party: Party, peers: list[str], at: Callable[[str], Tag], transcript: bytes,
              timeout_s: float) -> None:
    """Every party tells the others it has its result (see the comment in _run_psi_once)."""
    for p in peers:
        party.send(p, at("done"), RunConfirm(transcript))
    for p in peers:
        got = party.recv(p, at("done"), RunConfirm, timeout_s=timeout_s)
        if got.transcript != transcript:
            raise RemoteProtocolError("completion for another run", peer=p)


def _save_result(ckpt: Checkpoint | None, keep_result: bool, keys: Sequence[bytes],
                 public: dict[str, Any], res: PsiResult, run_id: str) -> None:
    if ckpt is None:
        return
    rows = np.asarray(res.rows if res.rows is not None else [], dtype=np.int64)
    ckpt.clear()
    if keep_result:
        ckpt.save_result(digest=input_digest(keys), public=public, rows=rows.tobytes(),
                         result={"size": res.size, "own_size": res.own_size,
                                 "peer_sizes": res.peer_sizes, "mode": res.mode,
                                 "has_rows": res.rows is not None, "run_id": run_id})


class PsiOptions(TypedDict, total=False):
    """The keyword arguments of :func:`run_psi_keys` (its docstring says what each does and
    its signature gives the defaults), which :func:`run_psi` passes on."""

    peers: Sequence[str] | None
    config: PsiConfig | None
    session: str
    timeout_s: float
    workers: int | None
    progress: bool | None
    checkpoint: str | os.PathLike[str] | None
    rejoin_s: float | None
    keep_result: bool
    link: Any
    cache: str | os.PathLike[str] | None


def run_psi(
    party: Party,
    ids: Sequence[Any] | Sequence[Sequence[Any]],
    *,
    composite: bool = False,
    duplicates: Duplicates = "error",
    **options: Unpack[PsiOptions],
) -> PsiResult:
    """Normalise ``ids`` (one per row; with ``composite=True`` a list of columns) and run PSI.

    The returned ``rows`` index the input rows (duplicates dropped under
    ``"keep-first"``; -1 for a placeholder row of an outer join); the normalisation
    report is attached as ``result.normalize``. ``config.protocol`` picks the
    protocol (``"ecdh"``, ``"rr22"``, ``"kkrt"``; the latter two need ``link``),
    ``config.join`` the join type, and ``config.mode="unbalanced"`` with
    ``config.phase`` the unbalanced phases (they need ``cache``); see :func:`run_psi_keys`.

    Raises:
        IdError: missing, empty or (by default) duplicated IDs, before connecting to anyone.
        and everything :func:`run_psi_keys` raises.
    """
    config = options["config"] = options.get("config") or PsiConfig()
    columns = list(ids) if composite else [ids]
    norm = normalize_ids(columns, config.normalize, duplicates=duplicates)  # type: ignore[arg-type]
    res = run_psi_keys(party, norm.keys, **options)
    if res.rows is not None:
        res.rows = map_rows(norm.rows, res.rows)
    res.normalize = norm.report
    return res


def map_rows(key_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Key indices -> input row indices, keeping placeholders (-1) as they are."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full(len(rows), PLACEHOLDER, dtype=np.int64)
    real = rows >= 0
    out[real] = np.asarray(key_rows)[rows[real]]
    return out


__all__ = ["NormalizeReport", "PsiOptions", "map_rows", "run_psi", "run_psi_keys"]

