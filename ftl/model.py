"""Representation networks and the FTL loss (Liu et al., arXiv:1812.03337), in pure torch.

Notation (one training step):

* A (guest) holds labelled rows. ``S`` is a batch of A's labelled rows ("source"),
  ``C`` a batch of the overlap (rows both parties hold, in PSI order), n = |C|.
  B (host) holds features only.
* Each party's network is ``u = W·[f(x), 1]``: a local bottom ``f`` and a linear
  representation layer ``W`` (d × K, the bias is the last column). ``a`` and
  ``b`` denote A's and B's activations ``[f(x), 1]`` (K_A and K_B wide).
* Labels are L columns of ±1 (``label_matrix``): binary (``n_classes=2``) is one
  column y ∈ {−1, +1}, as in the paper; with C > 2 classes, one-vs-rest: L = C
  columns, y_c = +1 for class c and −1 otherwise (FATE's FTL is binary-only).
* ``Φ_c = mean_{k∈S} y_kc u^A_k`` (the paper's Φ^A, one row of the L × d matrix Φ
  per label column), and the scores of any B row are ``φ(u^B) = Φ u^B`` (L logits;
  logistic link per column; with C > 2 the predicted class is the largest).

Loss of one step::

    L  = L1 + L2 + α·L_src + λ/2 (‖θ_A‖² + ‖θ_B‖²)
    L1 = mean_{i∈C} Σ_c ℓ(y_ic, Φ_c·u^B_i)     ℓ = log(1+e^{−yφ}), or its Taylor form
                                                log 2 − ½yφ + ⅛φ² (encrypted mode)
    L2 = γ·mean_{i∈C} ‖u^A_i − u^B_i‖²          alignment on the overlap
    L_src = mean_{k∈S} Σ_c log(1+e^{−y_kc Φ_c·u^A_k})  A's own rows (A-local; α = 0 is the paper)

The cross-party terms L1 and L2 train the representation layers W_A and W_B
(the bottoms enter them detached): that is what lets their gradients be computed
under encryption as ciphertext × plaintext products only (``ftl.he``). A's bottom
learns from its own labelled rows (L_src); B's bottom, if it has one, is a fixed
random feature map.

With the Taylor form every cross-party gradient is a function of a few
aggregates (``CrossTerms``), which is what the protocol computes:

    for A:  T = U_Bᵀ [a_C, Y_C]  (d × (K_A+L)),  SΦ = (U_BᵀU_B) Φᵀ  (d × L)
    for B:  Cᵀb  with  c_i = −½ Φᵀy_i − 2γ u^A_i,  and  Q·(U_Bᵀb)  with  Q = ¼ΦᵀΦ

    ∂L/∂W_A = gΦ · Ȳa + (2γ/n)(u_Cᵀ a_C − T[:, :K_A]),   gΦ = (−½T[:, K_A:] + ¼SΦ)/n  (d × L)
    ∂L/∂W_B = (Cᵀb + Q U_Bᵀb + 2γ U_Bᵀb)/n

where Ȳa = mean_{k∈S} y_k a_kᵀ (L × K_A, so Φ = Ȳa W_Aᵀ). C and Q are d wide
whatever L is, so B's side of the protocol does not depend on the number of
classes; A's aggregates grow by L − 1 columns. ``federated_loss`` is the same
loss written for autograd; the tests check one against the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ftl.net import Adam, RepresentationNet
from party.errors import ConfigError
from party.schedule import epoch_batches as schedule_batches

FloatArray = npt.NDArray[np.float64]

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FtlParams:
    """Model and training parameters; both parties must use the same ones.

    Attributes:
        dim: d, the shared representation dimension.
        guest_hidden: hidden widths of A's bottom network (trained on A's rows).
        host_hidden: hidden widths of B's bottom network (a fixed random map).
        alignment: γ, weight of the alignment term L2. With ``lr_decay``, the same
            cross-validation gave pooled AUCs 0.7131 / 0.7095 / 0.6985 (1% overlap, 100
            rows: noisy) and 0.7548 / 0.7552 / 0.7533 (5%) for γ = 0 / 0.01 / 0.1: on the
            credit split the alignment term adds nothing measurable; 0.01 keeps the
            paper's term with a small weight.
        source_weight: α, weight of A's own logistic loss L_src (0: the paper's loss).
        l2: λ, L2 regularisation of every trained parameter.
        lr: Adam learning rate (both parties).
        lr_decay: decay the learning rate linearly from ``lr`` towards 0 over the run
            (epochs × steps per epoch). Chosen by 5-fold cross-validation on the overlap
            rows of the credit benchmark (AUC of B's held-out overlap rows; B's other rows
            are never used): without it the last iterates of both networks are noisy and
            the AUC varies by ±0.02 between batch orders.
        epochs: passes over the overlap.
        batch_size: overlap rows per step (the last short batch joins the previous one).
        source_batch: A's labelled rows per step used for Φ and L_src.
        seed: seeds the networks, the batch order and A's source batches.
        n_classes: classes of A's labels, 0..n_classes−1 (2: binary, one label column;
            more: one-vs-rest, one column per class).
        taylor: use the Taylor form of ℓ (required by the encrypted mode).
        timeout_s: per-message deadline of the protocol runner.
    """

    dim: int = 2
    guest_hidden: tuple[int, ...] = (16,)
    host_hidden: tuple[int, ...] = ()
    alignment: float = 0.01
    source_weight: float = 1.0
    l2: float = 0.1
    lr: float = 0.05
    lr_decay: bool = True
    epochs: int = 30
    batch_size: int = 32
    source_batch: int = 2048
    seed: int = 0
    n_classes: int = 2
    taylor: bool = True
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "guest_hidden", tuple(int(h) for h in self.guest_hidden))
        object.__setattr__(self, "host_hidden", tuple(int(h) for h in self.host_hidden))
        if not 1 <= self.dim <= 256:
            raise ConfigError(f"dim must be in 1..256, got {self.dim}")
        if any(h < 1 for h in (*self.guest_hidden, *self.host_hidden)):
            raise ConfigError("hidden widths must be >= 1")
        for name in ("alignment", "source_weight", "l2"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be finite and >= 0, got {v}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 0 or self.batch_size < 1 or self.source_batch < 2:
            raise ConfigError("epochs >= 0, batch_size >= 1 and source_batch >= 2 are required")
        if self.timeout_s <= 0:
            raise ConfigError("timeout_s must be > 0")
        if not 2 <= self.n_classes <= 64:
            raise ConfigError(f"n_classes must be in 2..64, got {self.n_classes}")

    @property
    def label_columns(self) -> int:
        """L: 1 for binary labels, one per class (one-vs-rest) otherwise."""
        return 1 if self.n_classes == 2 else self.n_classes

    def as_dict(self) -> dict[str, object]:
        """The fields both parties compare at the start of a run."""
        return {
            "dim": self.dim, "guest_hidden": list(self.guest_hidden),
            "host_hidden": list(self.host_hidden), "alignment": self.alignment,
            "source_weight": self.source_weight, "l2": self.l2, "lr": self.lr,
            "lr_decay": self.lr_decay, "epochs": self.epochs, "batch_size": self.batch_size,
            "source_batch": self.source_batch, "seed": self.seed,
            "n_classes": self.n_classes, "taylor": self.taylor,
        }


def signed(y: FloatArray | npt.NDArray[np.int64]) -> FloatArray:
    """Labels {0, 1} → {−1, +1} (refuses anything else)."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1:
        raise ConfigError(f"labels must be one column, got shape {arr.shape}")
    vals = set(np.unique(arr).tolist())
    if not vals <= {0.0, 1.0, -1.0}:
        raise ConfigError(f"labels must be binary (0/1 or −1/+1), got values {sorted(vals)[:5]}")
    return np.where(arr > 0, 1.0, -1.0)


def label_matrix(y: FloatArray | npt.NDArray[np.int64], n_classes: int) -> FloatArray:
    """Labels → (rows, L) ±1: binary {0, 1} → one column; classes 0..C−1 → one-vs-rest."""
    if n_classes == 2:
        return signed(y)[:, None]
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1:
        raise ConfigError(f"labels must be one column, got shape {arr.shape}")
    if not (np.all(arr == np.round(arr)) and arr.min(initial=0) >= 0
            and arr.max(initial=0) < n_classes):
        raise ConfigError(f"labels must be class numbers 0..{n_classes - 1} (n_classes="
                          f"{n_classes}), got values {sorted(set(np.unique(arr).tolist()))[:5]}")
    out = -np.ones((arr.size, n_classes))
    out[np.arange(arr.size), arr.astype(np.int64)] = 1.0
    return out


def _cols(y: FloatArray) -> FloatArray:
    y = np.asarray(y, dtype=np.float64)
    return y[:, None] if y.ndim == 1 else y


def _t(x: FloatArray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64))


def _np(x: torch.Tensor) -> FloatArray:
    return np.asarray(x.detach().numpy(), dtype=np.float64)


def l1_value(phi: torch.Tensor, y: torch.Tensor, *, taylor: bool) -> torch.Tensor:
    """Logistic loss of scores ``phi`` for labels ``y`` ∈ {−1, +1}: mean over rows, summed
    over label columns (the second axis, when there is one)."""
    per = (LOG2 - 0.5 * y * phi + 0.125 * phi * phi) if taylor else nn.functional.softplus(-y * phi)
    return per.sum(dim=1).mean() if per.dim() == 2 else per.mean()


def federated_loss(wa: torch.Tensor, wb: torch.Tensor, a_s: torch.Tensor, ys: torch.Tensor,
                   a_c: torch.Tensor, yc: torch.Tensor, b_c: torch.Tensor, *, gamma: float,
                   taylor: bool) -> torch.Tensor:
    """L1 + L2 for autograd (the reference the protocol's gradients are checked against).

    ``ys``, ``yc``: (rows, L) ±1 label matrices (a 1-d vector is one column)."""
    ys, yc = (ys[:, None] if ys.dim() == 1 else ys), (yc[:, None] if yc.dim() == 1 else yc)
    phi = (ys[:, :, None] * (a_s @ wa.T)[:, None, :]).mean(dim=0)  # (L, d)
    u_b = b_c @ wb.T
    l1 = l1_value(u_b @ phi.T, yc, taylor=taylor)
    l2 = gamma * ((a_c @ wa.T - u_b) ** 2).sum(dim=1).mean()
    return l1 + l2


# --------------------------------------------------------------------------- guest (A)


@dataclass
class GuestBatch:
    """A's quantities for one step (numpy parts are what the protocol uses)."""

    yc: FloatArray          # (n, L) overlap labels ±1
    a_c: FloatArray         # (n, K_A) activations of the overlap rows
    u_c: FloatArray         # (n, d)
    ybar_a: FloatArray      # (L, K_A) mean_S y aᵀ
    phi: FloatArray         # (L, d) Φ = Ȳa W_Aᵀ
    src_loss: torch.Tensor  # L_src (graph into A's bottom and top)
    src_loss_value: float


@dataclass
class HostBatch:
    """B's quantities for one step."""

    b: FloatArray   # (n, K_B)
    u: FloatArray   # (n, d)

    @property
    def s(self) -> FloatArray:
        return self.u.T @ self.u

    @property
    def m(self) -> FloatArray:
        return self.u.T @ self.b


@dataclass
class CrossForGuest:
    """What A needs from B's side (computed under B's key in the encrypted mode)."""

    t: FloatArray      # (d, K_A + L) = U_Bᵀ [a_C, Y_C]
    s_phi: FloatArray  # (d, L) = U_BᵀU_B Φᵀ
    tr_s: float        # Σ‖u_B‖² over the batch (for the loss value only)
    reg_b: float       # ‖θ_B‖² (for the loss value only)


@dataclass
class CrossForHost:
    """What B needs from A's side (computed under A's key in the encrypted mode)."""

    ctb: FloatArray    # (d, K_B) = Cᵀ b
    qm: FloatArray     # (d, K_B) = Q U_Bᵀ b


class _SideModel:
    """One party's network and optimiser; the step on λ/2‖θ‖² + ⟨∂(L1+L2)/∂W, W⟩ (+ more)."""

    def __init__(self, role: str, n_features: int, params: FtlParams, hidden: tuple[int, ...], *,
                 seed: int, train_bottom: bool = True) -> None:
        if n_features < 1:
            raise ConfigError(f"the {role} needs at least one feature column")
        self.params = params
        self.net = RepresentationNet(n_features, hidden, params.dim, seed=seed, train_bottom=train_bottom)
        self.opt = Adam([p for p in self.net.parameters() if p.requires_grad], lr=params.lr)

    @property
    def width(self) -> int:
        return self.net.width

    def _step(self, grad_fed: FloatArray, extra: torch.Tensor | float = 0.0) -> None:
        """One optimiser step on ``extra`` + λ/2‖θ‖² + ⟨grad_fed, W⟩."""
        self.opt.zero_grad()
        surrogate = extra + 0.5 * self.params.l2 * self.reg_tensor()
        surrogate = surrogate + (self.net.weight() * _t(grad_fed)).sum()
        surrogate.backward()  # type: ignore[union-attr]
        self.opt.step()

    def reg_tensor(self) -> torch.Tensor:
        return sum((q**2).sum() for q in self.net.parameters() if q.requires_grad)  # type: ignore[return-value]

    def reg(self) -> float:
        return float(self.reg_tensor().detach())


class GuestModel(_SideModel):
    """A's network, optimiser and the A half of the gradient (no I/O)."""

    def __init__(self, n_features: int, params: FtlParams) -> None:
        super().__init__("guest", n_features, params, params.guest_hidden, seed=params.seed * 2 + 1)
        self.phi_final: FloatArray | None = None

    def begin(self, xs: FloatArray, ys: FloatArray, xc: FloatArray, yc: FloatArray) -> GuestBatch:
        """Forward pass on a source batch and an overlap batch (``ys``, ``yc``: (rows, L) ±1;
        a 1-d vector is one column)."""
        p = self.params
        ys, yc = _cols(ys), _cols(yc)
        a_s = self.net.features(_t(xs))
        w = self.net.weight()
        yst = _t(ys)
        u_s = a_s @ w.T
        phi_graph = (yst[:, :, None] * u_s[:, None, :]).mean(dim=0)  # (L, d)
        src = nn.functional.softplus(-yst * (u_s @ phi_graph.T)).sum(dim=1).mean()
        with torch.no_grad():
            a_c = self.net.features(_t(xc))
            u_c = a_c @ w.T
            ybar_a = (yst[:, :, None] * a_s[:, None, :]).mean(dim=0)  # (L, K_A)
        return GuestBatch(yc=np.asarray(yc, dtype=np.float64), a_c=_np(a_c), u_c=_np(u_c),
                          ybar_a=_np(ybar_a), phi=_np(phi_graph), src_loss=src * p.source_weight,
                          src_loss_value=float(src.detach()))

    def for_host(self, g: GuestBatch) -> tuple[FloatArray, FloatArray]:
        """A's cross inputs to B's gradient: C (n × d) and Q (d × d)."""
        c = -0.5 * g.yc @ g.phi - 2.0 * self.params.alignment * g.u_c
        q = 0.25 * g.phi.T @ g.phi
        return c, q

    def t_columns(self, g: GuestBatch) -> FloatArray:
        """The plaintext columns A multiplies B's encrypted U_B by: [a_C, Y_C]."""
        return np.concatenate([g.a_c, g.yc], axis=1)

    def grad(self, g: GuestBatch, cross: CrossForGuest) -> tuple[FloatArray, float]:
        """∂(L1+L2)/∂W_A from the cross terms, and the (Taylor) value of L1 + L2."""
        p, n, k = self.params, g.a_c.shape[0], g.a_c.shape[1]
        t, ty = cross.t[:, :k], cross.t[:, k:]
        g_phi = (-0.5 * ty + 0.25 * cross.s_phi) / n  # (d, L)
        w = _np(self.net.weight())
        grad = g_phi @ g.ybar_a + (2 * p.alignment / n) * (g.u_c.T @ g.a_c - t)
        l1 = (LOG2 * g.yc.shape[1]
              + (-0.5 * float((g.phi.T * ty).sum()) + 0.125 * float((g.phi.T * cross.s_phi).sum())) / n)
        l2 = p.alignment / n * (float((g.u_c**2).sum()) - 2 * float((t * w).sum()) + cross.tr_s)
        return grad, float(l1 + l2)

    def apply(self, g: GuestBatch, grad_fed: FloatArray) -> None:
        """One optimiser step on α·L_src + λ/2‖θ_A‖² + ⟨∂(L1+L2)/∂W_A, W_A⟩."""
        self._step(grad_fed, g.src_loss)

    def compute_phi(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """Φ (L × d) over all of A's labelled rows (``y``: (rows, L) ±1; what scoring
        uses); stored in ``phi_final``."""
        with torch.no_grad():
            u = self.net(_t(x))
            phi = (_t(_cols(y))[:, :, None] * u[:, None, :]).mean(dim=0)
        self.phi_final = _np(phi)
        return self.phi_final

    def score_own(self, x: FloatArray) -> FloatArray:
        """A's own scores u_A Φᵀ for its rows (the source-domain classifier); see ``scores``."""
        if self.phi_final is None:
            raise ConfigError("compute_phi() must run before scoring")
        with torch.no_grad():
            return scores(_np(self.net(_t(x))), self.phi_final)


class HostModel(_SideModel):
    """B's network, optimiser and the B half of the gradient (no I/O)."""

    def __init__(self, n_features: int, params: FtlParams) -> None:
        super().__init__("host", n_features, params, params.host_hidden, seed=params.seed * 2 + 2,
                         train_bottom=False)

    def begin(self, xb: FloatArray) -> HostBatch:
        with torch.no_grad():
            b = self.net.features(_t(xb))
            u = b @ self.net.weight().T
        return HostBatch(b=_np(b), u=_np(u))

    def grad(self, h: HostBatch, cross: CrossForHost) -> FloatArray:
        """∂(L1+L2)/∂W_B from the cross terms."""
        n = h.b.shape[0]
        return (cross.ctb + cross.qm + 2 * self.params.alignment * h.m) / n

    def apply(self, grad_fed: FloatArray) -> None:
        """One optimiser step on λ/2‖θ_B‖² + ⟨∂(L1+L2)/∂W_B, W_B⟩."""
        self._step(grad_fed)

    def represent(self, x: FloatArray) -> FloatArray:
        with torch.no_grad():
            return _np(self.net(_t(x)))


def scores(u: FloatArray, phi: FloatArray) -> FloatArray:
    """Logits u Φᵀ: (rows,) for binary labels (one column), (rows, C) otherwise."""
    out = u @ np.atleast_2d(phi).T
    return np.asarray(out[:, 0] if out.shape[1] == 1 else out, dtype=np.float64)


def plain_cross(g: GuestBatch, h: HostBatch, guest: GuestModel, host: HostModel
                ) -> tuple[CrossForGuest, CrossForHost]:
    """Both cross terms computed in the clear (plaintext mode and tests)."""
    c, q = guest.for_host(g)
    cg = CrossForGuest(t=h.u.T @ guest.t_columns(g), s_phi=h.s @ g.phi.T,
                       tr_s=float((h.u**2).sum()), reg_b=host.reg())
    ch = CrossForHost(ctb=c.T @ h.b, qm=q @ h.m)
    return cg, ch


def epoch_batches(n_overlap: int, params: FtlParams, epoch: int) -> list[npt.NDArray[np.int64]]:
    """Overlap row indices of each step of ``epoch`` (same on both sides: seeded;
    ``party.schedule``, balanced batches)."""
    return [np.asarray(b, dtype=np.int64) for b in
            schedule_batches(n_overlap, params.batch_size, params.seed, epoch, stream=7,
                             balanced=True)]


def schedule(model: GuestModel | HostModel, n_overlap: int) -> None:
    """Set the optimiser's decay horizon (``FtlParams.lr_decay``): epochs × steps per epoch."""
    p = model.params
    model.opt.total_steps = (p.epochs * len(epoch_batches(n_overlap, p, 0))
                             if p.lr_decay and n_overlap > 0 else None)


def source_rows(n_source: int, params: FtlParams, epoch: int, step: int) -> npt.NDArray[np.int64]:
    """A's labelled rows used at (epoch, step) for Φ and L_src (A-local, seeded)."""
    if n_source <= params.source_batch:
        return np.arange(n_source, dtype=np.int64)
    rng = np.random.default_rng([params.seed, 11, epoch, step])
    return np.sort(rng.choice(n_source, size=params.source_batch, replace=False))


__all__ = [
    "Adam",
    "CrossForGuest",
    "CrossForHost",
    "FtlParams",
    "GuestBatch",
    "GuestModel",
    "HostBatch",
    "HostModel",
    "RepresentationNet",
    "epoch_batches",
    "federated_loss",
    "l1_value",
    "label_matrix",
    "plain_cross",
    "schedule",
    "scores",
    "signed",
    "source_rows",
]
