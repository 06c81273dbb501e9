"""The interactive layer ``z_p = h_p W_p`` of one passive party, behind one interface.

The trainers call the same methods in both modes; the mode only chooses the class:

* :class:`HeActive` / :class:`HePassive` run :mod:`vfl.he.layer` (CKKS, ``W_p`` additively
  shared; messages ``act``, ``fwd``, ``share`` forward and ``grad``, ``back``, ``gshare``
  backward). *A learns z_p, P learns ∂L/∂h_p; see vfl.he.layer.*
* :class:`PlainActive` / :class:`PlainPassive` send ``h_p`` in the clear (``act``) and
  ``∂L/∂h_p`` back (``grad``); A holds ``W_p`` (comparison mode: *A learns P's bottom
  outputs, which can reveal its features*).

Each message of a batch has its own tag: ``t7`` gives ``t7/act`` (:func:`msg_tag`).
:class:`Link` moves them between this party and one peer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from party import Party, Tag
from party.errors import RemoteProtocolError
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

log = logging.getLogger("vfl.trainer")
FloatArray = npt.NDArray[np.float64]


def msg_tag(tag: Tag, name: str) -> Tag:
    """Message ``name`` of the batch ``tag`` names: ``t7`` gives ``t7/act`` (``tag.at(name)``
    alone would drop the step, and every batch of an epoch would share one slot)."""
    return tag.at(f"{tag.step}/{name}")


@dataclass(frozen=True)
class Link:
    """This party's messages with one peer, each under its batch's tag."""

    party: Party
    peer: str
    timeout_s: float

    def send(self, tag: Tag, msg: Any) -> None:
        self.party.send(self.peer, tag, msg)

    def recv(self, tag: Tag, kind: type[Any]) -> Any:
        return self.party.recv(self.peer, tag, kind, timeout_s=self.timeout_s)


def _state(w: FloatArray, m: FloatArray) -> dict[str, torch.Tensor]:
    return {"w": torch.from_numpy(w.copy()), "m": torch.from_numpy(m.copy())}


def _arrays(state: dict[str, Any]) -> tuple[FloatArray, FloatArray]:
    return (state["w"].numpy().astype(np.float64).copy(),
            state["m"].numpy().astype(np.float64).copy())


class ActiveSide(Protocol):
    """A's end of one passive party's interactive layer."""

    def open(self, link: Link, tag: Tag) -> None:
        """Exchange what the layer needs before the first batch (HE: public contexts)."""

    def forward(self, link: Link, tag: Tag, rows: int, train: bool) -> FloatArray:
        """z_p (rows × k) of the batch ``tag``."""

    def backward(self, link: Link, tag: Tag, delta: FloatArray, noise: FloatArray | None) -> None:
        """Send ∂L/∂h_p (+ ``noise``) for δ = ∂L/∂z_p; update our part of W_p."""

    def state(self) -> dict[str, torch.Tensor]:
        """Our part of W_p and its momentum (checkpoints)."""

    def set_state(self, state: dict[str, Any]) -> None: ...


class PassiveSide(Protocol):
    """P's end of its interactive layer."""

    def open(self, link: Link, tag: Tag) -> None: ...

    def forward(self, link: Link, tag: Tag, h: FloatArray, train: bool) -> None:
        """Send what A needs for z_p = h W_p of the batch ``tag``."""

    def gradient(self, link: Link, tag: Tag, shape: tuple[int, ...]) -> FloatArray:
        """∂L/∂h (``shape``) of the training batch ``tag``."""

    def state(self) -> dict[str, torch.Tensor]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...

    def share(self) -> FloatArray | None:
        """What a saved half keeps of W_p (HE: our share W_P; plaintext: nothing)."""


class HeActive:
    """A's side of the CKKS layer for one passive party (our share W_A, our keys)."""

    def __init__(self, ckks: CkksParams, d: int, k: int, *, lr: float, momentum: float,
                 w: FloatArray | None = None) -> None:
        self.layer = ActiveLayer(ckks, d, k, lr=lr, momentum=momentum)
        if w is not None:
            self.layer.w = w.copy()

    @classmethod
    def from_plan(cls, ckks: CkksParams, d: int, k: int, *, lr: float, momentum: float,
                  w_init: FloatArray, peer: str) -> HeActive:
        """A new run: W_A starts at 0 (P's share holds W's initial value)."""
        return cls(ckks, d, k, lr=lr, momentum=momentum)

    @classmethod
    def from_saved(cls, ckks: CkksParams, d: int, k: int, *, lr: float, momentum: float,
                   w: FloatArray) -> HeActive:
        """A loaded half: our saved share W_A, fresh keys."""
        return cls(ckks, d, k, lr=lr, momentum=momentum, w=w)

    def open(self, link: Link, tag: Tag) -> None:
        ctx = self.layer.public_context()  # parameters + public key only (threats row 28)
        log.info("%s: sending a %d-byte public CKKS context to %s", link.party.name,
                 len(ctx.context), link.peer)
        link.send(tag.at("ctx_a"), ctx)
        self.layer.on_public_context(link.recv(tag.at("ctx_p"), PublicContext))

    def forward(self, link: Link, tag: Tag, rows: int, train: bool) -> FloatArray:
        # step 1: Enc_P(h) - A learns nothing (P's key)
        m1 = link.recv(msg_tag(tag, "act"), EncActivations)
        if m1.rows != rows:
            raise RemoteProtocolError(f"sent {m1.rows} rows, expected {rows}", peer=link.peer)
        if bool(m1.row_blocked) != train:
            raise RemoteProtocolError("training/evaluation phase mismatch", peer=link.peer)
        # step 2: masked U_j - P learns nothing (every slot masked by A)
        link.send(msg_tag(tag, "fwd"), self.layer.on_activations(m1))
        # step 3: v = hW + Σr rounded - A learns z_P = hW, not h or W
        return self.layer.on_forward_share(link.recv(msg_tag(tag, "share"), ForwardShare))

    def backward(self, link: Link, tag: Tag, delta: FloatArray, noise: FloatArray | None) -> None:
        # step 5: masked hᵀδ + T and Enc_A(δ) - P learns nothing of δ or W_A
        link.send(msg_tag(tag, "grad"), self.layer.backward(delta))
        # step 6: masked Y_i - A learns nothing of W_P
        gs = self.layer.on_masked_backward(link.recv(msg_tag(tag, "back"), MaskedBackward))
        if noise is not None:
            gs = GradShare(g=gs.g + noise)
        # step 7: δWᵀ + Σs (+ noise) - P learns ∂L/∂h for its rows (by design)
        link.send(msg_tag(tag, "gshare"), gs)

    def state(self) -> dict[str, torch.Tensor]:
        return _state(self.layer.w, self.layer.m)

    def set_state(self, state: dict[str, Any]) -> None:
        self.layer.w, self.layer.m = _arrays(state)


class PlainActive:
    """A's side in plaintext mode: A holds W_p itself and learns h_p."""

    def __init__(self, w: FloatArray, *, d: int, k: int, lr: float, momentum: float) -> None:
        self.d, self.k = d, k
        self.w, self.m = np.asarray(w, dtype=np.float64), np.zeros_like(w, dtype=np.float64)
        self.lr, self.momentum = lr, momentum
        self._h: FloatArray | None = None

    @classmethod
    def from_plan(cls, ckks: CkksParams, d: int, k: int, *, lr: float, momentum: float,
                  w_init: FloatArray, peer: str) -> PlainActive:
        """A new run: W_p is P's initial value, sent with its plan ack."""
        w = np.asarray(w_init, dtype=np.float64)
        if w.shape != (d, k):
            raise RemoteProtocolError(f"W_init of shape {w.shape}", peer=peer)
        return cls(w, d=d, k=k, lr=lr, momentum=momentum)

    @classmethod
    def from_saved(cls, ckks: CkksParams, d: int, k: int, *, lr: float, momentum: float,
                   w: FloatArray) -> PlainActive:
        return cls(w.copy(), d=d, k=k, lr=lr, momentum=momentum)

    def open(self, link: Link, tag: Tag) -> None:
        pass

    def forward(self, link: Link, tag: Tag, rows: int, train: bool) -> FloatArray:
        # plaintext mode: A learns P's bottom output h itself (comparison only)
        h = link.recv(msg_tag(tag, "act"), PlainActivations).h
        if h.shape != (rows, self.d):
            raise RemoteProtocolError(f"activations of shape {h.shape}", peer=link.peer)
        self._h = h
        return np.asarray(h @ self.w)

    def backward(self, link: Link, tag: Tag, delta: FloatArray, noise: FloatArray | None) -> None:
        assert self._h is not None
        g = delta @ self.w.T
        if noise is not None:
            g = g + noise
        self.m = self.momentum * self.m + self._h.T @ delta
        self.w = self.w - self.lr * self.m
        self._h = None
        link.send(msg_tag(tag, "grad"), PlainGradient(g=g))  # P learns ∂L/∂h

    def state(self) -> dict[str, torch.Tensor]:
        return _state(self.w, self.m)

    def set_state(self, state: dict[str, Any]) -> None:
        self.w, self.m = _arrays(state)


class HePassive:
    """P's side of the CKKS layer (our share W_P, our keys)."""

    #: a saved half keeps this party's share W_P
    keeps_share = True

    def __init__(self, ckks: CkksParams, w: FloatArray, *, lr: float, momentum: float) -> None:
        self.layer = PassiveLayer(ckks, w, lr=lr, momentum=momentum)

    @staticmethod
    def plan_weights(w_init: FloatArray) -> FloatArray:
        """What the plan ack carries of W's initial value: nothing (it stays our share)."""
        return np.zeros((0, 0))

    def open(self, link: Link, tag: Tag) -> None:
        self.layer.on_public_context(link.recv(tag.at("ctx_a"), PublicContext))
        link.send(tag.at("ctx_p"), self.layer.public_context())

    def forward(self, link: Link, tag: Tag, h: FloatArray, train: bool) -> None:
        link.send(msg_tag(tag, "act"), self.layer.forward(h, train=train))
        m2 = link.recv(msg_tag(tag, "fwd"), MaskedForward)
        link.send(msg_tag(tag, "share"), self.layer.on_masked_forward(m2))

    def gradient(self, link: Link, tag: Tag, shape: tuple[int, ...]) -> FloatArray:
        m5 = link.recv(msg_tag(tag, "grad"), MaskedGradient)
        link.send(msg_tag(tag, "back"), self.layer.on_masked_gradient(m5))
        return self.layer.on_grad_share(link.recv(msg_tag(tag, "gshare"), GradShare))

    def state(self) -> dict[str, torch.Tensor]:
        return _state(self.layer.w, self.layer.m)

    def set_state(self, state: dict[str, Any]) -> None:
        if state:
            self.layer.w, self.layer.m = _arrays(state)

    def share(self) -> FloatArray | None:
        return self.layer.w


class PlainPassive:
    """P's side in plaintext mode: h in the clear; A holds W_p."""

    keeps_share = False

    def __init__(self, ckks: CkksParams | None = None, w: FloatArray | None = None, *,
                 lr: float = 0.0, momentum: float = 0.0) -> None:
        pass  # the same constructor as HePassive; nothing to hold

    @staticmethod
    def plan_weights(w_init: FloatArray) -> FloatArray:
        """W's initial value goes to A with the plan ack (A holds W in plaintext mode)."""
        return w_init

    def open(self, link: Link, tag: Tag) -> None:
        pass

    def forward(self, link: Link, tag: Tag, h: FloatArray, train: bool) -> None:
        link.send(msg_tag(tag, "act"), PlainActivations(h=h))

    def gradient(self, link: Link, tag: Tag, shape: tuple[int, ...]) -> FloatArray:
        g: FloatArray = link.recv(msg_tag(tag, "grad"), PlainGradient).g
        if g.shape != shape:
            raise RemoteProtocolError(f"gradient of shape {g.shape}", peer=link.peer)
        return g

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def share(self) -> FloatArray | None:
        return None


ACTIVE_SIDES: dict[str, type[HeActive] | type[PlainActive]] = {
    "he": HeActive, "plaintext": PlainActive}
PASSIVE_SIDES: dict[str, type[HePassive] | type[PlainPassive]] = {
    "he": HePassive, "plaintext": PlainPassive}


__all__ = [
    "ACTIVE_SIDES",
    "PASSIVE_SIDES",
    "ActiveSide",
    "HeActive",
    "HePassive",
    "Link",
    "PassiveSide",
    "PlainActive",
    "PlainPassive",
    "msg_tag",
]
