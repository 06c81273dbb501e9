"""SecAgg / SecAgg+ server, sans-I/O: one method per stage, each taking the
messages that arrived (a dict client -> message; absent clients dropped out)
and returning the next stage's messages (a dict client -> message).

  advertise_keys({u: AdvertiseKeys})    -> {u: PublicKeys}        U0 = who advertised
  share_keys({u: EncryptedShares})      -> {v: ForwardedShares}   U1 = who shared
  masked_input({u: MaskedInput})        -> {u: UnmaskRequest}     U2 = who sent y_u
  unmask({u: UnmaskShares})             -> SecAggResult           U3 = who answered

A message that is malformed, from an unknown client, or for another session or
round excludes its sender exactly like a dropout (``rejected`` records why).
Whenever fewer than ``t`` clients remain, or some client's secret could no longer
be rebuilt from ``t`` live share holders, the stage raises
:class:`party.errors.QuorumLost`: the round is aborted and nothing is returned.

Unmasking (stage 3) rebuilds b_v for every v in U2 and the mask secret key of
every v in U1 \\ U2 (verified against its advertised public key), then removes
PRG(b_v) for survivors and, for each dropped v, the pair masks ±PRG(s_uv) that
its surviving neighbours u added. All masks are AES-CTR keystreams read as
uint words and added into one array with numpy (mod 2**bits by wraparound).
See :mod:`secure_agg.client` for what the server learns.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np

from party.errors import QuorumLost, RemoteProtocolError
from party.fsm import Machine, Table, transition
from secure_agg import graph, keys, prg, quantize, shamir
from secure_agg.messages import (
    CIPHERTEXT_BYTES,
    AdvertiseKeys,
    EncryptedShares,
    ForwardedShares,
    InRound,
    MaskedInput,
    PublicKeys,
    UnmaskRequest,
    UnmaskShares,
)
from secure_agg.params import SecAggParams

log = logging.getLogger("secure_agg")

T = TypeVar("T", bound=InRound)


class ServerStage(enum.Enum):
    """Where the server is in its round."""

    ADVERTISE = "advertise_keys"
    SHARE = "share_keys"
    MASKED = "masked_input"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


#: event -> {stage it may happen in: stage it leaves} (party.fsm)
SERVER_TRANSITIONS: Final[Table[ServerStage]] = {
    "advertise_keys": {ServerStage.ADVERTISE: ServerStage.SHARE},
    "share_keys": {ServerStage.SHARE: ServerStage.MASKED},
    "add_masked_input": {ServerStage.MASKED: ServerStage.MASKED},  # one vector as it arrives
    "masked_input": {ServerStage.MASKED: ServerStage.UNMASK},
    "unmask": {ServerStage.UNMASK: ServerStage.DONE},
    # a client's message the runner could not even decode: a dropout with a reason
    "reject": {s: s for s in ServerStage if s not in (ServerStage.DONE, ServerStage.ABORTED)},
}


@dataclass(frozen=True)
class SecAggResult:
    """The outcome of one round: Σ w_u x_u and Σ w_u over the survivors."""

    sum: np.ndarray  # float64, (d,)
    total_weight: float
    survivors: list[str]  # whose input is in the sum (U2)
    dropped: dict[str, str]  # client -> stage at which it dropped out or was excluded
    responders: list[str] = field(default_factory=list)  # who answered the unmask request
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        """The weighted mean Σ w_u x_u / Σ w_u (FedAvg)."""
        if self.total_weight <= 0:
            raise ZeroDivisionError("total weight is 0: no weighted mean")
        return self.sum / self.total_weight


class SecAggServer(Machine[ServerStage]):
    """The server's side of one aggregation round.

    Args:
        clients: the cohort (party names), at most ``params.num_clients``.
        params: the round's parameters (the clients use the same).
        session: the federation run's id.
        round: the round number.
        graph_seed: 32 bytes for the SecAgg+ graph; random when omitted.
        clock: when given (the runner passes ``time.perf_counter``), each stage's
            duration goes into ``timings``; the server never reads the clock itself.

    ``QuorumLost`` or a :class:`RemoteProtocolError` in any stage aborts the round
    (``ServerStage.ABORTED``, intermediate values dropped; party.fsm).
    """

    transitions = SERVER_TRANSITIONS
    aborted = ServerStage.ABORTED
    abort_on = (QuorumLost, RemoteProtocolError)

    def __init__(
        self,
        clients: Sequence[str],
        *,
        params: SecAggParams,
        session: str,
        round: int = 0,
        graph_seed: bytes | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock
        if len(set(clients)) != len(clients):
            raise ValueError("duplicate client ids")
        if len(clients) > params.num_clients:
            raise ValueError(f"{len(clients)} clients > params.num_clients={params.num_clients}")
        self.clients = list(clients)
        self.params = params
        self.session = session
        self.round = round
        self.stage = ServerStage.ADVERTISE
        self.graph_seed = graph_seed if graph_seed is not None else os.urandom(32)
        self.rejected: dict[str, str] = {}
        self.dropped: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._roster: list[str] = []
        self._index: dict[str, int] = {}
        self._nbrs: dict[str, frozenset[str]] = {}
        self._mask_pk: dict[str, bytes] = {}
        self._u1: set[str] = set()
        self._u2: list[str] = []
        self._requests: dict[str, UnmaskRequest] = {}
        self._sum: np.ndarray | None = None
        self._got_y: set[str] = set()

    @property
    def alive(self) -> list[str]:
        """Clients still expected at the current stage."""
        if self.stage is ServerStage.ADVERTISE:
            return list(self.clients)
        if self.stage is ServerStage.SHARE:
            return list(self._roster)
        if self.stage is ServerStage.MASKED:
            return sorted(self._u1)
        if self.stage is ServerStage.UNMASK:
            return list(self._u2)
        return []

    # ---- stage 0 ------------------------------------------------------------------
    @transition("advertise_keys")
    def advertise_keys(self, msgs: Mapping[str, AdvertiseKeys]) -> dict[str, PublicKeys]:
        """Fix the roster U0 and the graph; send everyone the public keys."""
        ok = self._valid(msgs, AdvertiseKeys, self.clients, "advertise_keys")
        seen: set[bytes] = set()
        roster = []
        for u in self.clients:
            m = ok.get(u)
            if m is None:
                continue
            if m.enc_public in seen or m.mask_public in seen or m.enc_public == m.mask_public:
                self._reject(u, "advertise_keys", "public key identical to another one")
                continue
            seen.update((m.enc_public, m.mask_public))
            roster.append(u)
        self._mark_dropped(self.clients, roster, "advertise_keys")
        self._quorum(len(roster), "advertise_keys")
        self._roster = roster
        self._index = {c: i + 1 for i, c in enumerate(roster)}
        self._nbrs = graph.neighbours(roster, self.params.degree, self.graph_seed)
        self._mask_pk = {u: ok[u].mask_public for u in roster}
        if min(len(v) for v in self._nbrs.values()) + 1 < self.params.t:
            raise QuorumLost(
                f"secagg {self.session}/{self.round}: {len(roster)} clients left at advertise_keys "
                f"give fewer than t={self.params.t} share holders per client"
            )
        enc = np.stack([np.frombuffer(ok[u].enc_public, dtype=np.uint8) for u in roster])
        msk = np.stack([np.frombuffer(ok[u].mask_public, dtype=np.uint8) for u in roster])
        pk = PublicKeys(
            session=self.session, round=self.round, clients=list(roster),
            enc_public=enc, mask_public=msk, graph_seed=self.graph_seed,
        )
        return dict.fromkeys(roster, pk)

    # ---- stage 1 ------------------------------------------------------------------
    @transition("share_keys")
    def share_keys(self, msgs: Mapping[str, EncryptedShares]) -> dict[str, ForwardedShares]:
        """Fix U1 (who shared); forward each ciphertext to its addressee."""
        ok = self._valid(msgs, EncryptedShares, self._roster, "share_keys")
        u1 = set()
        for u, m in ok.items():
            if m.dsts != sorted(self._nbrs[u]):
                self._reject(u, "share_keys", "ciphertexts not addressed to exactly its neighbours")
                continue
            u1.add(u)
        # A client with fewer than t live holders could not be unmasked if it
        # dropped later: leave it out now (nobody gets its shares), and repeat.
        while True:
            weak = {u for u in u1 if len((self._nbrs[u] & u1) | {u}) < self.params.t}
            if not weak:
                break
            for u in weak:
                self._reject(u, "share_keys", "fewer than t of its share holders remain")
            u1 -= weak
        self._mark_dropped(self._roster, u1, "share_keys")
        self._quorum(len(u1), "share_keys")
        self._u1 = u1
        out = {}
        for v in sorted(u1):
            srcs = sorted(self._nbrs[v] & u1)
            cts = np.empty((len(srcs), CIPHERTEXT_BYTES), dtype=np.uint8)
            for i, u in enumerate(srcs):
                cts[i] = ok[u].ciphertexts[ok[u].dsts.index(v)]
            out[v] = ForwardedShares(session=self.session, round=self.round, srcs=srcs, ciphertexts=cts)
        return out

    # ---- stage 2 ------------------------------------------------------------------
    @transition("masked_input")
    def masked_input(self, msgs: Mapping[str, MaskedInput]) -> dict[str, UnmaskRequest]:
        """Fix U2 (who sent y), add up the y's, ask survivors for the shares needed."""
        for u, m in msgs.items():
            self.add_masked_input(u, m)
        return self._close_masked_input()

    @transition("add_masked_input")
    def add_masked_input(self, u: str, msg: MaskedInput) -> bool:
        """Add one client's masked vector to the running sum as it arrives.

        Lets a server keep O(d) memory instead of holding every y_u; the stage is
        closed by :meth:`masked_input` (with the remaining messages, if any).
        Returns False when the message was rejected (the client counts as dropped).
        """
        if u in self._got_y:  # a replayed duplicate: the first one is already in the sum
            log.warning("secagg %s: ignoring a second masked vector from %r", self.session, u)
            return False
        ok = self._valid({u: msg}, MaskedInput, self._u1, "masked_input")
        if u not in ok:
            return False
        y = ok[u].y
        dt = quantize.dtype_of(self.params)
        length = self.params.vector_length + 1
        if y.dtype != dt or y.shape != (length,):
            self._reject(u, "masked_input", f"masked vector {y.dtype}{y.shape}, expected {dt}({length},)")
            return False
        if self._sum is None:
            self._sum = np.zeros(length, dtype=dt)
        np.add(self._sum, y, out=self._sum)
        self._got_y.add(u)
        return True

    def _close_masked_input(self) -> dict[str, UnmaskRequest]:
        u2 = sorted(self._got_y)
        length = self.params.vector_length + 1
        self._mark_dropped(self._u1, u2, "masked_input")
        self._quorum(len(u2), "masked_input")
        alive = set(u2)
        for v in sorted(self._u1):
            live = len((self._nbrs[v] & alive) | ({v} & alive))
            if live < self.params.t:
                raise QuorumLost(
                    f"secagg {self.session}/{self.round}: client {v!r} has {live} surviving share "
                    f"holders after masked_input, fewer than t={self.params.t}"
                )
        if self._sum is None:  # pragma: no cover - quorum ensures at least one y
            self._sum = np.zeros(length, dtype=quantize.dtype_of(self.params))
        self._u2 = u2
        dead = self._u1 - alive
        self._requests = {
            u: UnmaskRequest(
                session=self.session,
                round=self.round,
                survivors=sorted((self._nbrs[u] & alive) | {u}),
                dropped=sorted(self._nbrs[u] & dead),
            )
            for u in u2
        }
        return dict(self._requests)

    # ---- stage 3 ------------------------------------------------------------------
    @transition("unmask")
    def unmask(self, msgs: Mapping[str, UnmaskShares]) -> SecAggResult:
        """Rebuild the needed secrets from >= t shares each; remove the masks."""
        assert self._sum is not None
        ok = self._valid(msgs, UnmaskShares, self._u2, "unmask")
        b_pts: dict[str, list[tuple[int, bytes]]] = {v: [] for v in self._u2}
        dead = sorted(self._u1 - set(self._u2))
        s_pts: dict[str, list[tuple[int, bytes]]] = {v: [] for v in dead}
        responders = []
        for u in sorted(ok):
            m, req = ok[u], self._requests[u]
            if m.survivors != req.survivors or m.dropped != req.dropped:
                self._reject(u, "unmask", "answered a different request than it was sent")
                continue
            responders.append(u)
            x = self._index[u]
            for v, row in zip(m.survivors, m.self_mask_shares, strict=True):
                b_pts[v].append((x, row.tobytes()))
            for v, row in zip(m.dropped, m.mask_key_shares, strict=True):
                s_pts[v].append((x, row.tobytes()))
        self._quorum(len(responders), "unmask")
        t = self.params.t
        for what, pts in (("self-mask seed", b_pts), ("mask key", s_pts)):
            short = [v for v, p in pts.items() if len(p) < t]
            if short:
                raise QuorumLost(
                    f"secagg {self.session}/{self.round}: only {min(len(pts[v]) for v in short)} "
                    f"shares of the {what} of {short[:5]} arrived at unmask, fewer than t={t}"
                )
        acc = prg.MaskAccumulator(self._sum.shape[0], self._sum.dtype)
        acc.total = self._sum  # masks are removed in place
        s, r = self.session, self.round
        plus: list[bytes] = []
        minus: list[bytes] = []
        for v in self._u2:
            b = self._combine(b_pts[v], v, "self-mask seed")
            minus.append(prg.self_mask_key(b, session=s, round=r, client=v))
        for v in dead:
            sk = self._combine(s_pts[v], v, "mask key")
            if keys.public_from_secret(sk) != self._mask_pk[v]:
                raise RemoteProtocolError(
                    f"rebuilt mask key of dropped client {v!r} does not match its public key: "
                    "some unmask shares are wrong"
                )
            for u in sorted(self._nbrs[v] & set(self._u2)):
                k = prg.pairwise_mask_key(keys.agree(sk, self._mask_pk[u]), session=s, round=r, a=u, b=v)
                # u added +PRG when u < v, -PRG otherwise: undo it.
                (minus if u < v else plus).append(k)
        acc.apply(plus, minus)
        vec, weight = quantize.decode_sum(acc.total, self.params)
        return SecAggResult(
            sum=vec,
            total_weight=weight,
            survivors=list(self._u2),
            dropped=dict(self.dropped),
            responders=responders,
            timings=self.timings,
        )

    # ---- helpers ------------------------------------------------------------------
    def abort(self, reason: str = "aborted") -> None:
        """Abandon the round and drop every intermediate value."""
        self._abort(RuntimeError(reason))

    @transition("reject")
    def reject(self, u: str, step: str, reason: str) -> None:
        """Record that ``u``'s message for ``step`` was unusable (undecodable, an abort,
        the wrong type); ``u`` is then a dropout with that reason (``rejected``)."""
        self.rejected[u] = f"{step}: {reason}"

    def _label(self) -> str:
        return "secagg server"

    def _on_abort(self, error: BaseException | None) -> None:
        self._sum = None
        self._requests = {}
        log.info("secagg %s/%s aborted: %s", self.session, self.round, error or "aborted")

    def _combine(self, pts: list[tuple[int, bytes]], v: str, what: str) -> bytes:
        pts = sorted(pts)
        t = self.params.t
        try:
            secret = shamir.combine(pts, t)
            # With a spare share, rebuild from the last t as well: any single wrong share
            # (a lying or corrupted client) makes the two results differ.
            if len(pts) > t and shamir.combine(pts[-t:], t) != secret:
                raise shamir.ShamirError("shares are inconsistent (a wrong share was sent)")
        except shamir.ShamirError as e:
            raise RemoteProtocolError(f"cannot rebuild the {what} of {v!r}: {e}") from None
        return secret

    def _valid(
        self, msgs: Mapping[str, Any], kind: type[T], expected: Sequence[str] | set[str], stage: str
    ) -> dict[str, T]:
        exp = set(expected)
        out: dict[str, T] = {}
        for u, m in msgs.items():
            if u not in exp:
                log.warning("secagg %s: ignoring %s from unexpected client %r", self.session, stage, u)
                continue
            if not isinstance(m, kind):
                self._reject(u, stage, f"sent {type(m).__name__}, expected {kind.__name__}")
            elif (why := m.out_of_round(self.session, self.round)) is not None:
                self._reject(u, stage, f"message {why}")
            else:
                out[u] = m
        return out

    def _reject(self, u: str, stage: str, reason: str) -> None:
        self.rejected[u] = f"{stage}: {reason}"
        log.warning("secagg %s/%s: excluding %r at %s: %s", self.session, self.round, u, stage, reason)

    def _mark_dropped(self, before: Sequence[str] | set[str], after: Sequence[str] | set[str], stage: str) -> None:
        kept = set(after)
        for u in before:
            if u not in kept:
                self.dropped.setdefault(u, stage)

    def _quorum(self, n: int, stage: str) -> None:
        if n < max(3, self.params.t):
            raise QuorumLost(
                f"secagg {self.session}/{self.round}: {n} clients left at {stage}, fewer than "
                f"the threshold max(3, t={self.params.t}); round aborted, nothing applied"
            )
