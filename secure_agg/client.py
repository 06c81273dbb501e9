"""SecAgg / SecAgg+ client (Bonawitz et al. CCS'17; Bell et al. CCS'20), sans-I/O.

Stages (the server relays everything; clients never talk to each other):
  0. advertise_keys()                          -> AdvertiseKeys
     two fresh X25519 key pairs: ``enc`` (share encryption), ``mask`` (pair masks).
  1. share_keys(PublicKeys)                    -> EncryptedShares
     check the roster; draw the self-mask seed b_u (32 random bytes); Shamir-split
     b_u and the mask secret key among the share holders (neighbours and self) with
     threshold t; AES-GCM-encrypt each neighbour's pair of shares under
     HKDF(X25519(enc_u, enc_v)) with (session, round, stage, src, dst) as AAD.
  2. masked_input(ForwardedShares, x, weight)  -> MaskedInput
     decrypt the neighbours' shares (any failure aborts); send
     y_u = [w q(x), w] + PRG(b_u) + Σ_{v in U1∩N(u)} ±PRG(s_uv)  mod 2**bits,
     with + when u < v and − when u > v (ids compared as strings).
  3. unmask(UnmaskRequest)                     -> UnmaskShares
     for each listed survivor the share of b_v, for each listed dropped peer
     the share of its mask key — never both for one peer, and only once.

What each party learns (semi-honest server colluding with up to t−1 clients):
  server  Σ_u w_u q(x_u) and Σ_u w_u over the clients whose masked input it
          unmasked, who dropped and when, n and d. For every client v it obtains
          at most t−1 shares of one of b_v / mask-key_v, because every honest
          client refuses contradictory requests (a peer in both lists, itself listed
          as dropped, a non-neighbour, a repeated id, a peer that never shared, fewer
          than t survivors) and answers only one request per round. ``t`` must
          exceed (holders + corrupt)/2 (checked in SecAggParams), so a server
          splitting honest holders into two groups cannot get t of each.
  client  the roster and public keys, the graph, which neighbours shared and which
          survived; its own shares of neighbours' secrets (t−1 colluding clients
          learn nothing from them); nothing about other clients' inputs.

Not covered: a fully malicious server may lie about the roster or the graph seed
(the active variant needs a PKI and a consistency round), and the sum itself
leaks whatever it leaks; add differential privacy upstream if that matters.
Keys, seeds and shares are fresh per SecAggClient (one per round) and wiped when
the client finishes or aborts.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from party.errors import RemoteProtocolError
from party.fsm import Machine, Table, transition
from secure_agg import graph, keys, prg, quantize, shamir
from secure_agg.messages import (
    CIPHERTEXT_BYTES,
    SHARE_PAIR_BYTES,
    AdvertiseKeys,
    EncryptedShares,
    ForwardedShares,
    MaskedInput,
    PublicKeys,
    UnmaskRequest,
    UnmaskShares,
)
from secure_agg.params import SecAggParams


class Stage(enum.Enum):
    """Where a client is in its round."""

    IDLE = "idle"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    DONE = "done"
    ABORTED = "aborted"


#: event -> {stage it may happen in: stage it leaves} (party.fsm); tests drive every pair.
TRANSITIONS: Final[Table[Stage]] = {
    "advertise_keys": {Stage.IDLE: Stage.ADVERTISED},
    "share_keys": {Stage.ADVERTISED: Stage.SHARED},
    "masked_input": {Stage.SHARED: Stage.MASKED},
    "unmask": {Stage.MASKED: Stage.DONE},
}


class ClientAborted(RemoteProtocolError):
    """The server (or a peer via the server) sent something that makes this client quit."""


class SecAggClient(Machine[Stage]):
    """One client's side of one aggregation round.

    Args:
        me: this client's id (its party name).
        params: the round's parameters (the server uses the same).
        session: the federation run's id; with ``round`` it domain-separates all keys.
        round: the round number.
        rng: randomness for stochastic rounding (keys and seeds always use os.urandom).
        clock: when given (the runner passes ``time.perf_counter``), each stage's
            duration goes into ``timings``; the client never reads the clock itself.

    A :class:`RemoteProtocolError` in any stage aborts the client (``Stage.ABORTED``,
    secrets wiped; party.fsm).
    """

    transitions = TRANSITIONS
    aborted = Stage.ABORTED

    def __init__(
        self,
        me: str,
        *,
        params: SecAggParams,
        session: str,
        round: int = 0,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.me = me
        self._clock = clock
        self.params = params
        self.session = session
        self.round = round
        self.stage = Stage.IDLE
        self.timings: dict[str, float] = {}
        self._rng = rng
        self._enc: keys.KeyPair | None = None
        self._mask: keys.KeyPair | None = None
        self._b: bytes | None = None
        self._index: dict[str, int] = {}
        self._nbrs: frozenset[str] = frozenset()
        self._enc_pk: dict[str, bytes] = {}
        self._mask_pk: dict[str, bytes] = {}
        self._own_shares: tuple[bytes, bytes] | None = None
        self._held: dict[str, tuple[bytes, bytes]] = {}  # peer -> (b share, mask-key share)

    # ---- stage 0 ------------------------------------------------------------------
    @transition("advertise_keys")
    def advertise_keys(self) -> AdvertiseKeys:
        """Make the round's two key pairs; publish the public halves."""
        self._enc = keys.generate_keypair()
        self._mask = keys.generate_keypair()
        return AdvertiseKeys(
            session=self.session,
            round=self.round,
            enc_public=self._enc.public,
            mask_public=self._mask.public,
        )

    # ---- stage 1 ------------------------------------------------------------------
    @transition("share_keys")
    def share_keys(self, msg: PublicKeys) -> EncryptedShares:
        """Check the roster; Shamir-share b_u and the mask key; encrypt one pair per neighbour."""
        assert self._enc is not None and self._mask is not None
        self._check_head(msg, "PublicKeys")
        p = self.params
        ids = msg.clients
        if len(set(ids)) != len(ids):
            raise ClientAborted("roster lists a client twice")
        if self.me not in ids:
            raise ClientAborted(f"roster does not include this client {self.me!r}")
        if len(ids) < 3 or len(ids) < p.t:
            raise ClientAborted(
                f"roster of {len(ids)} clients is below max(3, threshold {p.t}): refusing to share"
            )
        if len(ids) > p.num_clients:
            raise ClientAborted(f"roster of {len(ids)} exceeds the configured {p.num_clients} clients")
        pos = ids.index(self.me)
        if bytes(msg.enc_public[pos]) != self._enc.public or bytes(msg.mask_public[pos]) != self._mask.public:
            raise ClientAborted("the server echoed this client's public keys wrongly")
        all_keys = {bytes(r) for r in msg.enc_public} | {bytes(r) for r in msg.mask_public}
        if len(all_keys) != 2 * len(ids):
            raise ClientAborted("some public keys in the roster are identical")
        self._index = {c: i + 1 for i, c in enumerate(ids)}
        self._enc_pk = {c: bytes(msg.enc_public[i]) for i, c in enumerate(ids)}
        self._mask_pk = {c: bytes(msg.mask_public[i]) for i, c in enumerate(ids)}
        self._nbrs = graph.neighbours(ids, p.degree, msg.graph_seed)[self.me]
        holders = sorted(self._nbrs | {self.me})
        if len(holders) < p.t:
            raise ClientAborted(f"only {len(holders)} share holders for threshold {p.t}")
        self._b = os.urandom(shamir.SECRET_BYTES)
        xs = [self._index[h] for h in holders]
        b_sh = shamir.split(self._b, xs, p.t)
        s_sh = shamir.split(self._mask.secret, xs, p.t)
        dsts = sorted(self._nbrs)
        cts = np.empty((len(dsts), CIPHERTEXT_BYTES), dtype=np.uint8)
        row = 0
        for h, bs, ss in zip(holders, b_sh, s_sh, strict=True):
            if h == self.me:
                self._own_shares = (bs, ss)
                continue
            key = keys.share_key(
                keys.agree(self._enc.secret, self._enc_pk[h]),
                session=self.session, round=self.round, a=self.me, b=h,
            )
            aad = keys.associated_data(
                session=self.session, round=self.round, stage="share_keys", src=self.me, dst=h
            )
            assert dsts[row] == h
            cts[row] = np.frombuffer(keys.seal(key, bs + ss, aad), dtype=np.uint8)
            row += 1
        return EncryptedShares(session=self.session, round=self.round, dsts=dsts, ciphertexts=cts)

    # ---- stage 2 ------------------------------------------------------------------
    def masked_input(self, msg: ForwardedShares, x: npt.ArrayLike, *, weight: float = 1) -> MaskedInput:
        """Decrypt the neighbours' shares; return the masked, weighted, quantised input."""
        # Validate the caller's input first, in any stage: a bad vector is our mistake,
        # not an abort.
        return self._masked_input(msg, quantize.encode(x, weight, self.params, self._rng))

    @transition("masked_input")
    def _masked_input(self, msg: ForwardedShares, enc: np.ndarray) -> MaskedInput:
        assert self._enc is not None and self._mask is not None and self._b is not None
        self._check_head(msg, "ForwardedShares")
        if len(set(msg.srcs)) != len(msg.srcs):
            raise ClientAborted("forwarded shares list a peer twice")
        bad = [s for s in msg.srcs if s not in self._nbrs]
        if bad:
            raise ClientAborted(f"forwarded shares from non-neighbours {bad[:5]}")
        if len(msg.srcs) + 1 < self.params.t:
            raise ClientAborted(
                f"only {len(msg.srcs)} neighbours shared keys; below threshold {self.params.t} - 1"
            )
        for src, row in zip(msg.srcs, msg.ciphertexts, strict=True):
            key = keys.share_key(
                keys.agree(self._enc.secret, self._enc_pk[src]),
                session=self.session, round=self.round, a=self.me, b=src,
            )
            aad = keys.associated_data(
                session=self.session, round=self.round, stage="share_keys", src=src, dst=self.me
            )
            pt = keys.open_sealed(key, row.tobytes(), aad, what=f"share from {src!r} to {self.me!r}")
            if len(pt) != SHARE_PAIR_BYTES:
                raise ClientAborted(f"share plaintext from {src!r} has {len(pt)} bytes")
            self._held[src] = (pt[: shamir.SHARE_BYTES], pt[shamir.SHARE_BYTES :])
        dt = quantize.dtype_of(self.params)
        acc = prg.MaskAccumulator(enc.shape[0], dt)
        acc.total = enc  # masks are added in place into the encoded input
        plus = [prg.self_mask_key(self._b, session=self.session, round=self.round, client=self.me)]
        minus: list[bytes] = []
        for v in self._held:
            shared = keys.agree(self._mask.secret, self._mask_pk[v])
            k = prg.pairwise_mask_key(shared, session=self.session, round=self.round, a=self.me, b=v)
            (plus if self.me < v else minus).append(k)
        acc.apply(plus, minus)
        return MaskedInput(session=self.session, round=self.round, y=acc.total)

    # ---- stage 3 ------------------------------------------------------------------
    @transition("unmask")
    def unmask(self, msg: UnmaskRequest) -> UnmaskShares:
        """Reveal b-shares of survivors and mask-key shares of dropped peers, once."""
        assert self._own_shares is not None
        self._check_head(msg, "UnmaskRequest")
        surv, dead = msg.survivors, msg.dropped
        if len(set(surv)) != len(surv) or len(set(dead)) != len(dead):
            raise ClientAborted("unmask request lists the same client twice")
        both = set(surv) & set(dead)
        if both:
            raise ClientAborted(
                f"unmask request lists {sorted(both)[:5]} as both survived and dropped: "
                "refusing to reveal both secrets of one client"
            )
        if self.me in dead:
            raise ClientAborted("unmask request lists this client as dropped")
        if self.me not in surv:
            raise ClientAborted("unmask request does not list this client as a survivor")
        for v in list(surv) + list(dead):
            if v == self.me:
                continue
            if v not in self._nbrs:
                raise ClientAborted(f"unmask request names {v!r}, which is not a neighbour")
            if v not in self._held:
                raise ClientAborted(
                    f"unmask request names {v!r}, which never shared keys with this client "
                    "(it dropped before masked input)"
                )
        if len(surv) < self.params.t:
            raise ClientAborted(
                f"only {len(surv)} surviving share holders, below threshold {self.params.t}: "
                "the server should not have asked"
            )
        b_rows = np.empty((len(surv), shamir.SHARE_BYTES), dtype=np.uint8)
        for i, v in enumerate(surv):
            share = self._own_shares[0] if v == self.me else self._held[v][0]
            b_rows[i] = np.frombuffer(share, dtype=np.uint8)
        s_rows = np.empty((len(dead), shamir.SHARE_BYTES), dtype=np.uint8)
        for i, v in enumerate(dead):
            s_rows[i] = np.frombuffer(self._held[v][1], dtype=np.uint8)
        self._wipe()
        return UnmaskShares(
            session=self.session,
            round=self.round,
            survivors=list(surv),
            self_mask_shares=b_rows,
            dropped=list(dead),
            mask_key_shares=s_rows,
        )

    # ---- helpers ------------------------------------------------------------------
    def abort(self) -> None:
        """Quit the round: forget every secret; later calls raise LocalProtocolError."""
        self._abort()

    def _label(self) -> str:
        return f"secagg client {self.me!r}"

    def _on_abort(self, error: BaseException | None) -> None:
        self._wipe()

    def _check_head(self, msg: PublicKeys | ForwardedShares | UnmaskRequest, what: str) -> None:
        why = msg.out_of_round(self.session, self.round)
        if why is not None:
            raise ClientAborted(f"{what} {why}")

    def _wipe(self) -> None:
        self._enc = self._mask = None
        self._b = None
        self._own_shares = None
        self._held = {}
