"""The interactive layer ``z_P = h W`` on CKKS: sans-I/O state machines for both roles.

Protocol (shared/design/vfl_he.md). P (passive) holds ``h`` (rows × d) and its
share ``W_P``; A (active) holds ``δ = ∂L/∂z_P`` and its share ``W_A``; ``W = W_A + W_P``
(d × k) is held by nobody. Each party owns a CKKS key pair and gives the other
only its public context. Per training step:

1. P -> A  ``EncActivations``: ``Enc_P(h)`` column-blocked (and row-blocked).
   *A learns nothing (ciphertexts under P's key).*
2. A -> P  ``MaskedForward``: ``U_j = Enc_P(h) ⊗ W_A[:, j] + Enc_P(r_j)`` (public-key
   encryption of a fresh uniform mask, which also re-randomizes the ciphertext).
   *P decrypts only masked slots: learns nothing about W_A.*
3. P -> A  ``ForwardShare``: ``v = Σ_blocks U + h W_P`` = ``h W + Σ r``, rounded and
   noise-flooded. *A removes its masks and learns ``z_P = h W`` (by design; A never
   sees h or W).*
4. A runs the top model; ``δ = ∂L/∂z_P``.
5. A -> P  ``MaskedGradient``: ``Gm_j = Enc_P(h_rows) ⊗ δ[:, j] + Enc_P(ξ_j)`` whose
   decryption sums to ``hᵀδ + T`` (T: A's mask, chosen so that A's share stays
   bounded), and ``Enc_A(δ)``. *P learns ``hᵀδ + T``: masked; and nothing from Enc_A(δ).*
6. P -> A  ``MaskedBackward``: ``Y_i = Enc_A(δ) ⊗ W_P[i, :] + Enc_A(s_i)``; P then
   updates its share ``W_P``. *A decrypts only masked slots: learns nothing about W_P.*
7. A -> P  ``GradShare``: ``δ Wᵀ + Σ s`` (rounded, noise-flooded); A updates ``W_A``.
   *P removes s and learns ``∂L/∂h = δ Wᵀ`` (by design, as in all split learning).*

Inference is steps 1–3. The shares follow SGD with momentum exactly:
``m ← μ m + hᵀδ; W ← W − lr m``, split as ``m_P ← μ m_P + (hᵀδ + T)``,
``m_A ← μ m_A − T``. A re-draws ``W_A`` within ±``share_bound`` each step (T is
derived from that draw), so neither share grows without bound.

Defences (threats.md rows 24–29): parameters checked against the HE standard;
public contexts asserted secret-key free; every ciphertext size-checked before
SEAL sees it; key ids checked; decryptions counted and keys rotated before their
budget runs out; decrypted values returned to a peer are noise-flooded and rounded
to ``2**-round_bits``; decryptions outside the mask range (a tampered ciphertext,
a wrong key) raise :class:`DecryptionRangeError`; batches over the slot count are
split into chunks.

Threat model and known limits: both parties are honest-but-curious (they follow
the protocol). Every ciphertext sent to the key owner is re-randomized by adding
a fresh public-key encryption (its mask), so the key owner cannot divide out the
randomness of its own ciphertexts to recover the peer's plaintext factors. The
CKKS noise of a product is not flooded (statistical circuit privacy would cost
about 40 more modulus bits); it sits below the slot masks and the rounding of
every value returned to a peer. A malicious peer can bias results (no proofs of
correct computation); tampering and wrong keys are caught by the range check.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from he import packing as pk
from he.endpoint import Endpoint
from he.keys import CkksPeer
from he.messages import PublicContext
from he.ops import masked_dot, release
from he.params import CkksParams
from party.errors import RemoteProtocolError
from party.fsm import Table, transition
from vfl.he.messages import (
    EncActivations,
    ForwardShare,
    GradShare,
    MaskedBackward,
    MaskedForward,
    MaskedGradient,
)

FloatArray = npt.NDArray[np.float64]


class Stage(enum.Enum):
    NEW = "new"  # public contexts not yet exchanged
    IDLE = "idle"
    FORWARD_TRAIN = "forward_train"  # P: sent activations; A: sent masked forward (training)
    FORWARD_EVAL = "forward_eval"  # the same for an evaluation / scoring pass
    FORWARD_DONE = "forward_done"  # training step: waiting for backward
    BACKWARD = "backward"  # P: sent masked backward; A: sent masked gradient


def _abort_moves() -> dict[Stage, Stage]:
    """``abort()``: forget a half-done step (back to IDLE; NEW stays)."""
    return {s: s if s is Stage.NEW else Stage.IDLE for s in Stage}


#: event -> {stage it may happen in: stage it leaves} (party.fsm)
PASSIVE_TRANSITIONS: Final[Table[Stage]] = {
    "on_public_context": {Stage.NEW: Stage.IDLE, Stage.IDLE: Stage.IDLE},
    "forward[train]": {Stage.IDLE: Stage.FORWARD_TRAIN},
    "forward[eval]": {Stage.IDLE: Stage.FORWARD_EVAL},
    "on_masked_forward": {Stage.FORWARD_TRAIN: Stage.FORWARD_DONE,
                          Stage.FORWARD_EVAL: Stage.IDLE},
    "on_masked_gradient": {Stage.FORWARD_DONE: Stage.BACKWARD},
    "on_grad_share": {Stage.BACKWARD: Stage.IDLE},
    "abort": _abort_moves(),
}
ACTIVE_TRANSITIONS: Final[Table[Stage]] = {
    "on_public_context": {Stage.NEW: Stage.IDLE, Stage.IDLE: Stage.IDLE},
    "on_activations[train]": {Stage.IDLE: Stage.FORWARD_TRAIN},
    "on_activations[eval]": {Stage.IDLE: Stage.FORWARD_EVAL},
    "on_forward_share": {Stage.FORWARD_TRAIN: Stage.FORWARD_DONE,
                         Stage.FORWARD_EVAL: Stage.IDLE},
    "backward": {Stage.FORWARD_DONE: Stage.BACKWARD},
    "on_masked_backward": {Stage.BACKWARD: Stage.IDLE},
    "abort": _abort_moves(),
}


def _phase(train: bool) -> str:
    return "train" if train else "eval"


class _Layer(Endpoint[Stage]):
    """What both roles share: the interactive weights' shape and SGD settings on top of
    ``he.Endpoint`` (keys, peer context, rotation, key-id checks, stage guard)."""

    roles = ("passive", "active")
    label = "{role} layer"

    def __init__(self, role: str, params: CkksParams, d: int, k: int, *,
                 lr: float, momentum: float, rng: np.random.Generator | None) -> None:
        if d < 1 or k < 1:
            raise ValueError(f"d and k must be >= 1, got d={d}, k={k}")
        if not lr > 0 or not 0 <= momentum < 1:
            raise ValueError(f"need lr > 0 and 0 <= momentum < 1, got {lr}, {momentum}")
        super().__init__(params, rng, Stage.NEW)
        self.role = role
        self.params = params
        self.d, self.k = d, k
        self.lr, self.momentum = lr, momentum

    @transition("on_public_context")
    def on_public_context(self, msg: PublicContext) -> None:
        """Load the peer's public context (refuses secret keys and other parameters)."""
        self._load_peer(msg.context, msg.key_id)

    @transition("abort")
    def abort(self) -> None:
        """Forget a half-done step (e.g. an evaluation pass or a failed peer)."""
        self._forget()

    def _forget(self) -> None:
        raise NotImplementedError

    # -- homomorphic building blocks ------------------------------------------
    def _mat_cols(self, eng: CkksPeer, cts: list[Any], mat: FloatArray, rows: int,
                  masks: FloatArray) -> list[bytes]:
        """out[o] = Σ_c cts[c] ⊗ col_weights(mat)[c] + Enc(masks[o]), rescaled."""
        slots = self.params.slots
        out: list[bytes] = []
        for o in range(mat.shape[1]):
            wv = pk.col_weights(mat, rows, slots, o)
            out.append(masked_dot(eng, cts, wv, masks[o]))
        return out

    def _decrypt_all(self, blobs: list[bytes]) -> list[FloatArray]:
        return [self.keys.decrypt(self.keys.load_ciphertext(b, level="last")) for b in blobs]

    def _uniform(self, *shape: int) -> FloatArray:
        m = self.params.mask_bound
        return self.rng.uniform(-m, m, size=shape)


class PassiveLayer(_Layer):
    """The passive party's side: owns h, W_P and its key pair."""

    transitions = PASSIVE_TRANSITIONS

    def __init__(self, params: CkksParams, w_init: FloatArray, *, lr: float,
                 momentum: float = 0.0, rng: np.random.Generator | None = None) -> None:
        d, k = w_init.shape
        super().__init__("passive", params, d, k, lr=lr, momentum=momentum, rng=rng)
        self.w = np.array(w_init, dtype=np.float64)  # W_P
        self.m = np.zeros_like(self.w)  # m_P
        self._h: FloatArray | None = None
        self._train = False
        self._s_sums: list[FloatArray] = []

    @transition("forward", lambda self, h, *, train: _phase(train))
    def forward(self, h: FloatArray, *, train: bool) -> EncActivations:
        """Step 1: encrypt h (rows × d) under our key."""
        h = np.asarray(h, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != self.d or h.shape[0] < 1:
            raise ValueError(f"h must be (rows, {self.d}), got {h.shape}")
        if not np.isfinite(h).all():
            raise ValueError("h contains NaN or Inf")
        if np.abs(h).max() > self.params.value_bound:
            raise ValueError(
                f"|h| up to {np.abs(h).max():.3g} exceeds value_bound {self.params.value_bound:g}"
            )
        slots = self.params.slots
        ch = pk.chunks(h.shape[0], slots)
        upcoming = self.k * (len(ch) + (1 if train else 0))
        context = self._maybe_rotate(upcoming)
        cols = [[self.keys.encrypt_symmetric(v) for v in pk.pack_cols(h[s], slots)] for s in ch]
        rows = [self.keys.encrypt_symmetric(v) for v in pk.pack_rows(h, slots)] if train else []
        self._h, self._train = h, train
        return EncActivations(key_id=self.keys.key_id, rows=h.shape[0], cols=cols,
                              row_blocked=rows, context=context)

    @transition("on_masked_forward")
    def on_masked_forward(self, msg: MaskedForward) -> ForwardShare:
        """Step 3: decrypt the masked products, add h W_P, release rounded."""
        assert self._h is not None
        self._check_own(msg.key_id)
        h, slots = self._h, self.params.slots
        ch = pk.chunks(h.shape[0], slots)
        if len(msg.u) != len(ch) or any(len(u) != self.k for u in msg.u):
            raise RemoteProtocolError(
                f"masked forward: expected {len(ch)} chunks of {self.k} ciphertexts", peer="active"
            )
        v = h @ self.w
        for s, blobs in zip(ch, msg.u, strict=True):
            rows = s.stop - s.start
            for j, dec in enumerate(self._decrypt_all(blobs)):
                v[s, j] += pk.sum_blocks(dec, rows, slots)
        return ForwardShare(v=release(v, self.params, self.rng))

    @transition("on_masked_gradient")
    def on_masked_gradient(self, msg: MaskedGradient) -> MaskedBackward:
        """Step 6: Y = Enc_A(δ) ⊗ W_Pᵀ + Enc_A(s); then update our share with hᵀδ + T."""
        assert self._h is not None
        self._check_own(msg.key_id)
        self._swap_peer(msg.context)
        peer = self._check_peer_key(msg.delta_key_id, "Enc_A(δ)")
        h, slots = self._h, self.params.slots
        ch = pk.chunks(h.shape[0], slots)
        if len(msg.delta) != len(ch) or len(msg.gm) != self.k:
            raise RemoteProtocolError("masked gradient: wrong number of ciphertexts", peer="active")
        ys: list[list[bytes]] = []
        self._s_sums = []
        wt = np.ascontiguousarray(self.w.T)  # k × d: Y_i uses W_P[i, :]
        for s, blobs in zip(ch, msg.delta, strict=True):
            rows = s.stop - s.start
            _, _, n_ct = pk.col_layout(rows, self.k, slots)
            if len(blobs) != n_ct:
                raise RemoteProtocolError(f"Enc(δ): expected {n_ct} ciphertexts", peer="active")
            cts = [peer.load_ciphertext(b, level="top") for b in blobs]
            masks = self._uniform(self.d, slots)
            ys.append(self._mat_cols(peer, cts, wt, rows, masks))
            self._s_sums.append(np.stack([pk.sum_blocks(m, rows, slots) for m in masks], 1))
        # hᵀδ + T: decrypt, add the row runs; then the share update (SGD with momentum)
        g = np.stack([pk.sum_rows(v, self.d, slots) for v in self._decrypt_all(msg.gm)], axis=1)
        self.m = self.momentum * self.m + g
        self.w = self.w - self.lr * self.m
        return MaskedBackward(key_id=peer.key_id, y=ys)

    def _forget(self) -> None:
        self._h, self._s_sums = None, []

    @transition("on_grad_share")
    def on_grad_share(self, msg: GradShare) -> FloatArray:
        """Step 7 (receiving end): remove our masks; returns ∂L/∂h (rows × d)."""
        assert self._h is not None
        if msg.g.shape != self._h.shape:
            raise RemoteProtocolError(
                f"gradient share has shape {msg.g.shape}, expected {self._h.shape}", peer="active"
            )
        s_sum = np.concatenate(self._s_sums, axis=0)
        grad = msg.g - s_sum
        self._h = None
        return grad


class ActiveLayer(_Layer):
    """The active party's side: owns δ, W_A and its key pair."""

    transitions = ACTIVE_TRANSITIONS

    def __init__(self, params: CkksParams, d: int, k: int, *, lr: float,
                 momentum: float = 0.0, rng: np.random.Generator | None = None) -> None:
        super().__init__("active", params, d, k, lr=lr, momentum=momentum, rng=rng)
        self.w = np.zeros((d, k))  # W_A
        self.m = np.zeros((d, k))  # m_A
        self._rows = 0
        self._r_sum: FloatArray | None = None
        self._row_cts: list[Any] = []
        self._train = False
        self._dwa: FloatArray | None = None

    @transition("on_activations", lambda self, msg: _phase(bool(msg.row_blocked)))
    def on_activations(self, msg: EncActivations) -> MaskedForward:
        """Step 2: U_j = Enc_P(h) ⊗ W_A[:, j] + Enc_P(r_j) for each output column j."""
        self._swap_peer(msg.context)
        peer = self._check_peer_key(msg.key_id, "activations")
        slots = self.params.slots
        ch = pk.chunks(msg.rows, slots)
        if len(msg.cols) != len(ch):
            raise RemoteProtocolError(f"expected {len(ch)} chunks for {msg.rows} rows",
                                      peer="passive")
        us: list[list[bytes]] = []
        r_sums = []
        for s, blobs in zip(ch, msg.cols, strict=True):
            rows = s.stop - s.start
            _, _, n_ct = pk.col_layout(rows, self.d, slots)
            if len(blobs) != n_ct:
                raise RemoteProtocolError(f"Enc(h): expected {n_ct} ciphertexts per chunk",
                                          peer="passive")
            cts = [peer.load_ciphertext(b, level="top") for b in blobs]
            masks = self._uniform(self.k, slots)
            us.append(self._mat_cols(peer, cts, self.w, rows, masks))
            r_sums.append(np.stack([pk.sum_blocks(m, rows, slots) for m in masks], 1))
        self._train = bool(msg.row_blocked)
        if self._train:
            _, _, n_rct = pk.row_layout(msg.rows, self.d, slots)
            if len(msg.row_blocked) != n_rct:
                raise RemoteProtocolError(f"Enc(h rows): expected {n_rct} ciphertexts",
                                          peer="passive")
            self._row_cts = [peer.load_ciphertext(b, level="top") for b in msg.row_blocked]
        self._rows = msg.rows
        self._r_sum = np.concatenate(r_sums, axis=0)
        return MaskedForward(key_id=peer.key_id, u=us)

    @transition("on_forward_share")
    def on_forward_share(self, msg: ForwardShare) -> FloatArray:
        """Step 4 (start): remove our masks; returns z_P = h W (rows × k)."""
        assert self._r_sum is not None
        if msg.v.shape != (self._rows, self.k):
            raise RemoteProtocolError(
                f"forward share has shape {msg.v.shape}, expected {(self._rows, self.k)}",
                peer="passive",
            )
        return msg.v - self._r_sum

    @transition("backward")
    def backward(self, delta: FloatArray) -> MaskedGradient:
        """Step 5: masked Enc_P(hᵀδ) for P's share update, and Enc_A(δ); updates W_A."""
        peer = self._need_peer()
        delta = np.asarray(delta, dtype=np.float64)
        if delta.shape != (self._rows, self.k) or not np.isfinite(delta).all():
            raise ValueError(f"δ must be finite with shape {(self._rows, self.k)}")
        slots = self.params.slots
        ch = pk.chunks(self._rows, slots)
        context = self._maybe_rotate(self.d * len(ch))
        # A's new share: a bounded random walk; T makes the shared SGD step exact.
        step = self.rng.uniform(-1.0, 1.0, size=self.w.shape) * (self.params.mask_bound / 4)
        b = self.params.share_bound
        w_new = np.clip(self.w + self.lr * step, -b, b)
        m_new = (self.w - w_new) / self.lr
        target = self.momentum * self.m - m_new
        m_pad, per, _ = pk.row_layout(self._rows, self.d, slots)
        gm: list[bytes] = []
        for j in range(self.k):
            xi = self._uniform(per, m_pad)
            tj = np.zeros(m_pad)
            tj[: self.d] = target[:, j]
            xi += (tj - xi.sum(axis=0)) / per  # runs now sum to T[:, j]
            wv = pk.row_weights(delta[:, j], self.d, slots)
            gm.append(masked_dot(peer, self._row_cts, wv, xi.reshape(-1)))
        enc_delta = [[self.keys.encrypt_symmetric(v) for v in pk.pack_cols(delta[s], slots)]
                     for s in ch]
        self._dwa = delta @ self.w.T  # with W_A before the update, as P uses W_P before its
        self.w, self.m = w_new, m_new
        self._row_cts = []
        return MaskedGradient(key_id=peer.key_id, gm=gm, delta_key_id=self.keys.key_id,
                              delta=enc_delta, context=context)

    @transition("on_masked_backward")
    def on_masked_backward(self, msg: MaskedBackward) -> GradShare:
        """Step 7: decrypt Y, add δ W_Aᵀ, release δ Wᵀ + Σ s rounded."""
        assert self._dwa is not None
        self._check_own(msg.key_id)
        slots = self.params.slots
        ch = pk.chunks(self._rows, slots)
        if len(msg.y) != len(ch) or any(len(y) != self.d for y in msg.y):
            raise RemoteProtocolError(
                f"masked backward: expected {len(ch)} chunks of {self.d} ciphertexts",
                peer="passive",
            )
        g = self._dwa.copy()
        for s, blobs in zip(ch, msg.y, strict=True):
            rows = s.stop - s.start
            for i, dec in enumerate(self._decrypt_all(blobs)):
                g[s, i] += pk.sum_blocks(dec, rows, slots)
        self._dwa = None
        return GradShare(g=release(g, self.params, self.rng))

    def _forget(self) -> None:
        self._row_cts, self._dwa, self._r_sum = [], None, None

__all__ = [
    "ACTIVE_TRANSITIONS",
    "PASSIVE_TRANSITIONS",
    "ActiveLayer",
    "PassiveLayer",
    "Stage",
    "release",
]
