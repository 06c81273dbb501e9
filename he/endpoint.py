"""One party's end of a two-party CKKS protocol: its key pair, the peer's public
context, key rotation, key-id checks and the stage guard.

Both CKKS protocols build on :class:`Endpoint` (``vfl.he.layer``: the split layer;
``ftl.protocol``: transfer learning); a new one should too. What it guarantees:

* The secret key never leaves :attr:`Endpoint.keys`; the peer gets only
  :meth:`public_context` (asserted secret-key free by ``he.keys.public_bytes``).
* The peer's context is loaded by :meth:`_load_peer` / :meth:`_swap_peer`
  (``he.keys.load_public``: no secret key, our parameters, bounded size), and its
  fingerprint must equal the key id the peer announced.
* Every ciphertext-carrying message names its key: :meth:`_check_own` refuses a
  product made under a key we no longer (or never) held, :meth:`_check_peer_key`
  a ciphertext not under the peer's announced key (:class:`he.KeyMismatch`).
* :meth:`_maybe_rotate` draws a fresh key pair *before* a step would pass the
  key's decryption budget (``CkksParams.max_decryptions``); the new public context
  rides on that step's message, and the peer swaps to it.
* It is a :class:`party.fsm.Machine`: each step method is decorated with
  :func:`party.fsm.transition` and the subclass's table (``transitions``) decides
  every (method, stage) pair; a call in the wrong stage is a ``StageError``
  (``LocalProtocolError``). A :class:`RemoteProtocolError` from the peer's message
  (a key mismatch, a tampered ciphertext, a wrong count) does *not* abort an
  endpoint (``abort_on = ()``): every step checks the peer's message before it
  writes any state, so a refused message leaves the endpoint as it was and its
  secrets unused; the runners stop the run on it (and drop the endpoint).
"""

from __future__ import annotations

import enum
from typing import TypeVar

import numpy as np

from he.keys import CkksKeys, CkksPeer, load_public
from he.messages import PublicContext
from he.params import CkksParams, KeyMismatch
from party.errors import LocalProtocolError
from party.fsm import Machine, Table

S = TypeVar("S", bound=enum.Enum)

#: event -> {stage it may happen in: stage it leaves} (:mod:`party.fsm`)
Transitions = Table


class Endpoint(Machine[S]):
    """Key pair, peer context and stage of one side; subclasses set ``roles``, ``role``
    (one of them), ``label`` and ``transitions``."""

    #: the protocol's two roles; the peer is the other one
    roles: tuple[str, str]
    role: str
    #: how local errors name this side (``{role}`` is filled in)
    label = "{role}"
    abort_on = ()  # a refused message changes nothing (see the module docstring)

    def __init__(self, ckks: CkksParams, rng: np.random.Generator | None, stage: S) -> None:
        self.ckks = ckks
        self.rng = rng if rng is not None else np.random.default_rng()
        self.keys = CkksKeys(ckks)
        self.peer: CkksPeer | None = None
        self.stage = stage
        self.rotations = 0

    @property
    def peer_name(self) -> str:
        a, b = self.roles
        return b if self.role == a else a

    def _label(self) -> str:
        return self.label.format(role=self.role)

    # -- keys -----------------------------------------------------------------
    def public_context(self) -> PublicContext:
        """Our parameters + public key, to send to the peer once (and after each rotation)."""
        return PublicContext(context=self.keys.public, key_id=self.keys.key_id)

    def _load_peer(self, context: bytes, key_id: str) -> None:
        """Load the peer's public context; its fingerprint must be the key id it claims."""
        self.peer = load_public(context, self.ckks, peer=self.peer_name)
        if self.peer.key_id != key_id:
            raise KeyMismatch(f"the {self.peer_name}'s public context fingerprint "
                              f"{self.peer.key_id} != claimed {key_id}")

    def _swap_peer(self, context: bytes) -> None:
        """The peer's new public context after its key rotation (``b""``: none)."""
        if context:
            self.peer = load_public(context, self.ckks, peer=self.peer_name)

    def _maybe_rotate(self, upcoming: int) -> bytes:
        """Fresh keys if this step's decryptions would pass the budget; returns the new context."""
        if self.keys.decryptions + upcoming <= self.ckks.max_decryptions:
            return b""
        self.keys = CkksKeys(self.ckks)
        self.rotations += 1
        return self.keys.public

    def _need_peer(self) -> CkksPeer:
        if self.peer is None:
            raise LocalProtocolError(f"{self._label()}: no peer public context yet")
        return self.peer

    def _check_own(self, key_id: str) -> None:
        """A product the peer made under our key must name our current key."""
        if key_id != self.keys.key_id:
            raise KeyMismatch(
                f"the {self.peer_name} used key {key_id}, but the {self.role}'s current key "
                f"is {self.keys.key_id} (stale or foreign key)"
            )

    def _check_peer_key(self, key_id: str, what: str = "ciphertexts") -> CkksPeer:
        """Ciphertexts the peer made under its own key must name its announced key."""
        peer = self._need_peer()
        if key_id != peer.key_id:
            raise KeyMismatch(f"{what} from the {self.peer_name} under key {key_id}, "
                              f"not its announced key {peer.key_id}")
        return peer


__all__ = ["Endpoint", "Transitions"]
