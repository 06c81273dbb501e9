"""FTL over CKKS: sans-I/O state machines for A (``FtlGuest``, labels) and B (``FtlHost``).

Liu et al., "A Secure Federated Transfer Learning Framework" (arXiv:1812.03337),
with the paper's Paillier replaced by CKKS from ``he``. Each party generates
its own key pair; only public contexts are exchanged (each side is an
``he.Endpoint``: keys, the peer's context, rotation, key-id checks, stage guard). Training uses B's key only
(every cross term is B's ciphertext × A's plaintext, so one encryption and one
round of decryptions per step); prediction uses A's key. The math (what the
aggregates are and how the gradients follow) is in ``ftl.model``; the
homomorphic product and its masks are ``ftl.he``.

Setup: both send ``Hello`` (role, parameters, overlap size, activation width,
public context). Mismatches (both or neither holding labels, different
parameters or overlap sizes, CKKS parameters) stop the run with ``ConfigError``
or ``RemoteProtocolError``.

One training step on an overlap batch C (n rows; A also draws a batch S of its
labelled rows). Labels are L columns of ±1 (``ftl.model``: L = 1 for binary labels,
L = C for C > 2 classes, one-vs-rest); Φ is L × d; b are B's activations, M = U_Bᵀb:

1. B -> A ``HostForward``: Enc_B(U_B), Enc_B(U_BᵀU_B/n), Enc_B(b), Enc_B(M/n)
   (packed together); plus Σ‖u_B‖² and ‖θ_B‖² in the clear (scalars, used only
   for the loss value).
2. A -> B ``GuestForward`` (ciphertext × plaintext, each output re-randomised by
   a fresh public-key encryption of its mask):
   Enc_B(U_Bᵀ[a_C, Y_C] + R1) and Enc_B((U_BᵀU_B/n)Φᵀ + R2) with uniform masks R
   in every slot (A keeps their block sums); Enc_B(bᵀC + Z1) and
   Enc_B((M/n)ᵀQ + Z2) with c_i = −½Φᵀy_i − 2γu^A_i, Q = ¼ΦᵀΦ and zero-sum
   masks Z (every slot masked, every block summing to 0).
3. B -> A ``HostBackward``: B decrypts; returns the block sums of the first two
   products, noise-flooded and rounded; keeps the block sums of the other two,
   which are exactly Cᵀb and Q·M/n (the Z cancel), computes the gradient of its
   representation layer (``ftl.model``) and takes an Adam step.
4. A -> B ``GuestBackward``: A removes R1, R2, gets T = U_Bᵀ[a_C, Y_C] and
   (U_BᵀU_B)Φᵀ, takes its Adam step and sends the step's loss.

Prediction for B's rows: B -> A ``PredictRequest``; A -> B ``EncPhi``
(Enc_A(Φᵀ)); B -> A ``PredictMasked`` (Enc_A(Φu_j + r_j)); A -> B
``PredictSums`` (released); B removes r_j and has the L scores of each row.

What each party learns:
  A (guest)  per step the aggregates T = U_Bᵀ[a_C, Y_C] (d × (K_A+L)) and
             (U_BᵀU_B)Φᵀ (d × L), plus Σ‖u_B‖² and ‖θ_B‖²: the gradient of its own
             representation layer, as in the paper. Never U_B, x_B or θ_B row by
             row: B refuses batches with n ≤ K_A + L rows, where T could be
             solved for U_B (with C > 2 classes A's aggregate has C − 1 more
             columns, so the bound is C − 1 rows higher than for binary labels).
             A decrypts nothing during training; in prediction it sees only
             masked values.
  B (host)   per step Cᵀb and Q·M (d × K_B each, whatever the number of
             classes): the gradient of its own layer. Every slot B decrypts is
             masked: the per-row products in the slots (b_ij·c_ik, which would
             give C and hence the labels row by row) carry zero-sum masks, A's
             aggregates uniform ones; only the block sums of the open products
             are exact. Not the labels, Φ or u_A of any row (A refuses n ≤ K_B + 1:
             Cᵀb could be solved for C). In prediction B learns the L scores
             Φu_j of its rows — the purpose — and hence, from d or more rows, Φ
             itself (L × d): that is inherent in giving B a linear scorer and is
             why only A's Φ (not A's network, features or labels) is ever exposed.
             As in any ciphertext × plaintext scheme, the CKKS noise of what B
             decrypts depends on A's plaintexts; each product is re-randomised by
             A's fresh encryption of its mask, and B returns A's sums only
             rounded and noise-flooded.
  Both       the overlap size, the batch order (seeded) and each other's
             activation width; every decryption returned to the peer is
             noise-flooded and rounded (Li–Micciancio; threats.md row 27) and
             counted, and keys rotate at ``CkksParams.max_decryptions``.
"""

from __future__ import annotations

import enum
from typing import Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from ftl import he
from ftl.data import GuestData, HostData
from ftl.messages import (
    EncPhi,
    GuestBackward,
    GuestForward,
    Hello,
    HostBackward,
    HostForward,
    PredictMasked,
    PredictRequest,
    PredictSums,
    StepMessage,
)
from ftl.model import (
    CrossForGuest,
    CrossForHost,
    FtlParams,
    GuestBatch,
    GuestModel,
    HostBatch,
    HostModel,
    epoch_batches,
    label_matrix,
    schedule,
    source_rows,
)
from he.endpoint import Endpoint
from he.params import CkksParams
from party.errors import ConfigError, RemoteProtocolError
from party.fsm import Table, transition

FloatArray = npt.NDArray[np.float64]
D = TypeVar("D", GuestData, HostData)
M = TypeVar("M", GuestModel, HostModel)


class Stage(enum.Enum):
    NEW = "new"
    READY = "ready"        # hello exchanged, between steps
    FORWARD = "forward"    # host: sent HostForward / guest: sent GuestForward
    BACKWARD = "backward"  # host: sent HostBackward
    PREDICT = "predict"    # host: sent PredictRequest, or guest: sent EncPhi
    PREDICT2 = "predict2"  # host: sent PredictMasked


#: event -> {stage it may happen in: stage it leaves} (party.fsm)
HOST_TRANSITIONS: Final[Table[Stage]] = {
    "on_hello": {Stage.NEW: Stage.READY},
    "begin_step": {Stage.READY: Stage.FORWARD},
    "on_guest_forward": {Stage.FORWARD: Stage.BACKWARD},
    "on_guest_backward": {Stage.BACKWARD: Stage.READY},
    "predict_request": {Stage.READY: Stage.PREDICT},
    "on_enc_phi": {Stage.PREDICT: Stage.PREDICT2},
    "on_predict_sums": {Stage.PREDICT2: Stage.READY},
}
GUEST_TRANSITIONS: Final[Table[Stage]] = {
    "on_hello": {Stage.NEW: Stage.READY},
    "on_host_forward": {Stage.READY: Stage.FORWARD},
    "on_host_backward": {Stage.FORWARD: Stage.READY},
    "on_predict_request": {Stage.READY: Stage.PREDICT},
    "on_predict_masked": {Stage.PREDICT: Stage.READY},
}


def min_batch_rows(peer_width: int) -> int:
    """Fewest overlap rows per step so that a step's aggregate cannot be solved for rows."""
    return peer_width + 2


class _Side(Endpoint[Stage], Generic[D, M]):
    """What both sides share: data, model, parameters, the hello and its checks, the steps.

    ``model``: a side's model to continue (default a fresh ``model_type``); ``start_epoch``: the
    epoch a resumed run starts at; ``predict_only``: scoring with a trained model, no schedule.
    """

    roles = ("guest", "host")
    label = "ftl {role}"
    model_type: type[M]
    data: D
    model: M

    def __init__(self, data: D, params: FtlParams, *, ckks: CkksParams | None = None,
                 model: M | None = None, start_epoch: int = 0,
                 rng: np.random.Generator | None = None, predict_only: bool = False) -> None:
        self._check_params(params)
        model = model or self.model_type(data.x.shape[1], params)
        super().__init__(ckks or CkksParams(), rng, Stage.NEW)
        if model.net.n_features != data.x.shape[1]:
            raise ConfigError(f"{self.role} model expects {model.net.n_features} features, "
                              f"data has {data.x.shape[1]}")
        if not predict_only:
            schedule(model, int(data.overlap.size))
        self.data, self.model = data, model
        self.params = params
        self.predict_only = predict_only
        self.peer_hello: Hello | None = None
        self.start_epoch = start_epoch
        self._at: tuple[int, int] = (-1, -1)  # (epoch, step) of the step in progress
        self._batch_cache: tuple[int, list[npt.NDArray[np.int64]]] | None = None
        self._start()

    def _check_params(self, params: FtlParams) -> None:
        """Refuse parameters this side cannot train with, before anything is built."""

    def _start(self) -> None:
        """This side's own state, after the shared set-up."""

    def _n_overlap(self) -> int:
        return int(self.data.overlap.size)

    def _batches(self, epoch: int) -> list[npt.NDArray[np.int64]]:
        """This epoch's overlap batches (seeded, the same on both sides), computed once."""
        cached = self._batch_cache
        if cached is None or cached[0] != epoch:
            cached = (epoch, epoch_batches(self._n_overlap(), self.params, epoch))
            self._batch_cache = cached
        return cached[1]

    def steps(self, epoch: int) -> int:
        return len(self._batches(epoch))

    def hello(self) -> Hello:
        """Setup, both ways: role, parameters, overlap size, activation width, public context."""
        return Hello(role=self.role, has_labels=self.role == "guest",
                     params=self.params.as_dict(), n_overlap=self._n_overlap(),
                     width=self.model.width, start_epoch=self.start_epoch,
                     context=self.keys.public, key_id=self.keys.key_id)

    @transition("on_hello")
    def on_hello(self, msg: Hello) -> None:
        self._check_hello(msg, self._n_overlap())

    def _check_hello(self, msg: Hello, n_overlap: int) -> None:
        if msg.role == self.role:
            held = "both hold labels" if self.role == "guest" else "neither holds labels"
            raise ConfigError(
                f"labels on the wrong side: both parties started as the {self.role} ({held}); "
                "the party with the labels must be the guest (A) and the other the host (B)"
            )
        if msg.has_labels != (msg.role == "guest"):
            raise RemoteProtocolError(
                f"the {msg.role} claims has_labels={msg.has_labels}", peer=self.peer_name)
        mine = self.params.as_dict()
        diff = sorted(k for k in set(mine) | set(msg.params) if mine.get(k) != msg.params.get(k))
        if diff:
            raise ConfigError(
                "FTL parameters differ between the parties: "
                + ", ".join(f"{k} (ours {mine.get(k)!r}, {self.peer_name} "
                            f"{msg.params.get(k)!r})" for k in diff[:5])
            )
        if msg.n_overlap != n_overlap:
            raise ConfigError(
                f"overlap sizes differ: we hold {n_overlap} aligned rows, the {self.peer_name} "
                f"{msg.n_overlap}; both must use the output of the same alignment (PSI) run"
            )
        if msg.start_epoch != self.start_epoch:
            raise ConfigError(
                f"checkpoints disagree: we resume at epoch {self.start_epoch}, the "
                f"{self.peer_name} at epoch {msg.start_epoch}; restore matching checkpoints"
            )
        # A learns U_Bᵀ[a_C, Y_C]: K_A + L known columns; B learns Cᵀb: K_B known columns
        cols = msg.width + self.params.label_columns - 1 if msg.role == "guest" else msg.width
        need = min_batch_rows(cols)
        smallest = min(len(b) for b in epoch_batches(n_overlap, self.params, 0))
        if smallest < need and not self.predict_only:
            raise ConfigError(
                f"overlap batches of {smallest} rows are too small: with the {self.peer_name}'s "
                f"activation width {msg.width} a batch needs at least {need} rows, or its "
                f"aggregate could be solved for single rows (raise batch_size or the overlap)"
            )
        self._load_peer(msg.context, msg.key_id)
        self.peer_hello = msg

    def _check_step(self, msg: StepMessage) -> None:
        """The peer's answer must be for the step we are in."""
        if (msg.epoch, msg.step) != self._at:
            raise RemoteProtocolError(f"{self.peer_name} answered step {(msg.epoch, msg.step)}, "
                                      f"expected {self._at}", peer=self.peer_name)

    def _check_shape(self, name: str, a: FloatArray, shape: tuple[int, ...]) -> None:
        if a.shape != shape:
            raise RemoteProtocolError(f"{name} has shape {a.shape}, expected {shape}",
                                      peer=self.peer_name)


class FtlHost(_Side[HostData, HostModel]):
    """B's side: features, no labels. Owns ``HostModel`` and B's key pair."""

    role = "host"
    transitions = HOST_TRANSITIONS
    model_type = HostModel

    def _start(self) -> None:
        self._batch: HostBatch | None = None
        self._pred_mask: FloatArray | None = None  # prediction: our masks of the scores
        self._pred: FloatArray | None = None
        self.last_loss = float("nan")

    def _shapes(self, n: int) -> tuple[list[tuple[int, int]], list[int]]:
        """The four matrices B encrypts each step and the column counts A multiplies them by."""
        assert self.peer_hello is not None
        d, lc, k_b = self.params.dim, self.params.label_columns, self.model.width
        return ([(n, d), (d, d), (n, k_b), (d, k_b)],
                [self.peer_hello.width + lc, lc, d, d])

    @transition("begin_step")
    def begin_step(self, epoch: int, step: int) -> HostForward:
        """Step 1: encrypt U_B, U_BᵀU_B/n, b and U_Bᵀb/n for this step's overlap batch."""
        idx = self._batches(epoch)[step]
        hb = self.model.begin(self.data.x[self.data.overlap[idx]])
        n = hb.u.shape[0]
        shapes, ks = self._shapes(n)
        ctx = self._maybe_rotate(he.decryptions_needed_many(shapes, ks, self.ckks))
        mats = [hb.u, hb.s / n, hb.b, hb.m / n]
        for mat, what in zip(mats, ("U_B", "U_BᵀU_B/n", "activations b", "U_Bᵀb/n"),
                             strict=True):
            he.check_range(self.ckks, mat, np.ones((1, 1)), f"host {what}")
        self._batch, self._at = hb, (epoch, step)
        stats = np.array([[float((hb.u**2).sum()), self.model.reg()]])
        msg = HostForward(epoch=epoch, step=step, key_id=self.keys.key_id,
                          x=he.encrypt_many(self.keys, mats, ks), stats=stats, context=ctx)
        return msg

    @transition("on_guest_forward")
    def on_guest_forward(self, msg: GuestForward) -> HostBackward:
        """Step 3: decrypt A's products; release A's masked sums; take our optimiser step
        with Cᵀb and Q·M (the open, zero-sum-masked blocks)."""
        hb = self._batch
        assert hb is not None
        self._check_step(msg)
        n = hb.u.shape[0]
        shapes, ks = self._shapes(n)
        t_sum, s_phi_sum, btc, mq = he.decrypt_many(self.keys, msg.prod, shapes, ks, self.rng,
                                                    peer_name="guest")
        cross = CrossForHost(ctb=btc.T, qm=mq.T * n)
        self.model.apply(self.model.grad(hb, cross))
        return HostBackward(epoch=msg.epoch, step=msg.step, t_sum=t_sum, s_phi_sum=s_phi_sum)

    @transition("on_guest_backward")
    def on_guest_backward(self, msg: GuestBackward) -> float:
        """Step 4 (B's half): the step's loss, as A computed it; returns it."""
        self._check_step(msg)
        self._batch = None
        self.last_loss = msg.loss
        return msg.loss

    # -- prediction -----------------------------------------------------------
    @transition("predict_request")
    def predict_request(self, x: FloatArray) -> PredictRequest:
        """Prediction step 1: B's representations of the rows to score."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.model.net.n_features:
            raise ConfigError(f"rows to score must have {self.model.net.n_features} feature "
                              f"columns, got shape {x.shape}")
        self._pred = self.model.represent(x)
        he.check_range(self.ckks, np.ones((1, 1)), self._pred, "host representations")
        return PredictRequest(rows=int(x.shape[0]))

    @transition("on_enc_phi")
    def on_enc_phi(self, msg: EncPhi) -> PredictMasked:
        assert self._pred is not None
        self._swap_peer(msg.context)
        peer = self._check_peer_key(msg.key_id, "EncPhi")
        d, lc = self.params.dim, self.params.label_columns
        out, mask = he.masked_product(peer, msg.phi, d, lc, self._pred.T,
                                      self.rng, peer_name="guest")
        self._pred_mask = mask
        return PredictMasked(scores=out)

    @transition("on_predict_sums")
    def on_predict_sums(self, msg: PredictSums) -> FloatArray:
        """Prediction step 4: remove our masks; returns the scores Φu_j (logits): (rows,)
        for binary labels, (rows, C) for C > 2 classes (one-vs-rest)."""
        assert self._pred is not None and self._pred_mask is not None
        lc = self.params.label_columns
        self._check_shape("scores", msg.scores, (lc, self._pred.shape[0]))
        unmasked = msg.scores - self._pred_mask
        scores = unmasked[0] if lc == 1 else unmasked.T
        self._pred, self._pred_mask = None, None
        return np.asarray(scores, dtype=np.float64)


class FtlGuest(_Side[GuestData, GuestModel]):
    """A's side: labelled rows. Owns ``GuestModel`` and A's key pair."""

    role = "guest"
    transitions = GUEST_TRANSITIONS
    model_type = GuestModel

    def _check_params(self, params: FtlParams) -> None:
        if not params.taylor:
            raise ConfigError("the encrypted mode needs taylor=True (the Taylor form of the loss)")

    def _start(self) -> None:
        self.ys = label_matrix(self.data.y, self.params.n_classes)
        self._batch: GuestBatch | None = None
        self._masks: tuple[FloatArray, FloatArray] | None = None
        self._stats: FloatArray | None = None
        self._pred_rows = 0

    @transition("on_host_forward")
    def on_host_forward(self, msg: HostForward) -> GuestForward:
        """Step 2: products of B's ciphertexts with our plaintexts: [a_C, Y_C] and Φᵀ under
        uniform masks (their sums are ours), C and Q under zero-sum masks (B's gradient)."""
        assert self.peer_hello is not None
        self._swap_peer(msg.context)
        peer = self._check_peer_key(msg.key_id, "HostForward")
        epoch, step = msg.epoch, msg.step
        batches = self._batches(epoch) if epoch < self.params.epochs else []
        if step >= len(batches):
            raise RemoteProtocolError(f"host started step {(epoch, step)}, outside the "
                                      "schedule", peer="host")
        idx = batches[step]
        src = source_rows(self.data.x.shape[0], self.params, epoch, step)
        rows = self.data.overlap[idx]
        gb = self.model.begin(self.data.x[src], self.ys[src], self.data.x[rows], self.ys[rows])
        n, d = gb.u_c.shape
        k_b = self.peer_hello.width
        p_t = self.model.t_columns(gb)
        c, q = self.model.for_host(gb)
        for mat, what in ((p_t, "activations"), (gb.phi, "Φ"), (c, "C"), (q, "Q")):
            he.check_range(self.ckks, np.ones((1, 1)), mat, f"guest {what}")
        prod, (mask_t, mask_s, _, _) = he.masked_product_many(
            peer, msg.x, [(n, d), (d, d), (n, k_b), (d, k_b)],
            [p_t, gb.phi.T, c, q], self.rng, peer_name="host",
            open_blocks=[False, False, True, True])
        self._batch, self._at, self._masks = gb, (epoch, step), (mask_t, mask_s)
        self._stats = msg.stats
        return GuestForward(epoch=epoch, step=step, prod=prod)

    @transition("on_host_backward")
    def on_host_backward(self, msg: HostBackward) -> GuestBackward:
        """Step 4: unmask our aggregates, take our optimiser step; send the step's loss."""
        gb, masks, stats = self._batch, self._masks, self._stats
        assert gb is not None and masks is not None and stats is not None
        self._check_step(msg)
        n, d = gb.u_c.shape
        lc = self.params.label_columns
        self._check_shape("t_sum", msg.t_sum, (d, self.model.width + lc))
        self._check_shape("s_phi_sum", msg.s_phi_sum, (d, lc))
        cross = CrossForGuest(t=msg.t_sum - masks[0], s_phi=(msg.s_phi_sum - masks[1]) * n,
                              tr_s=float(stats[0, 0]), reg_b=float(stats[0, 1]))
        grad, fed_loss = self.model.grad(gb, cross)
        p = self.params
        loss = (fed_loss + p.source_weight * gb.src_loss_value
                + 0.5 * p.l2 * (self.model.reg() + cross.reg_b))
        self.model.apply(gb, grad)
        self._batch, self._masks, self._stats = None, None, None
        return GuestBackward(epoch=msg.epoch, step=msg.step, loss=float(loss))

    def finish(self) -> FloatArray:
        """Φ over all of A's labelled rows, used for scoring B's rows."""
        return self.model.compute_phi(self.data.x, self.ys)

    # -- prediction -----------------------------------------------------------
    @transition("on_predict_request")
    def on_predict_request(self, msg: PredictRequest) -> EncPhi:
        phi = self.model.phi_final if self.model.phi_final is not None else self.finish()
        self._pred_rows = msg.rows
        upcoming = he.decryptions_needed(self.params.dim, self.params.label_columns, msg.rows,
                                         self.ckks)
        ctx = self._maybe_rotate(upcoming)
        out = EncPhi(key_id=self.keys.key_id, phi=he.encrypt(self.keys, phi.T),
                     context=ctx)
        return out

    @transition("on_predict_masked")
    def on_predict_masked(self, msg: PredictMasked) -> PredictSums:
        sums = he.decrypt_sums(self.keys, msg.scores, self.params.dim, self.params.label_columns,
                               self._pred_rows, self.rng, peer_name="host")
        return PredictSums(scores=sums)


def check_roles(role: str, y: object) -> None:
    """Refuse labels on the host side and a guest without labels (clear message)."""
    if role == "host" and y is not None:
        raise ConfigError("labels on the wrong side: the host (B) must not hold labels; "
                          "the party with the labels runs as the guest (A)")
    if role == "guest" and y is None:
        raise ConfigError("labels on the wrong side: the guest (A) must hold the labels")
    if role not in ("guest", "host"):
        raise ConfigError(f"role must be 'guest' or 'host', got {role!r}")


__all__ = [
    "GUEST_TRANSITIONS",
    "HOST_TRANSITIONS",
    "FtlGuest",
    "FtlHost",
    "Stage",
    "check_roles",
    "min_batch_rows",
]
