"""Wire messages of the CKKS interactive layer (vfl_he.md steps 1–7).

Ciphertexts travel as SEAL-serialized ``bytes`` (size-checked by the receiver
before deserializing); decrypted-and-returned values travel as float64 arrays.
Every ciphertext-carrying message names the key it was made under (``key_id``).
``PublicContext`` and the field types (checked by the codec on decode) are shared
with FTL (:mod:`he.messages`).
"""

from __future__ import annotations

from dataclasses import dataclass

from he.messages import MAX_CIPHERTEXTS, CiphertextChunks, Ciphertexts, Matrix, PublicContext
from party import wire
from party.codec import Blob, PosInt, Text


@wire("vfl.he.enc_activations", version=1)
@dataclass(frozen=True)
class EncActivations:
    """Step 1, P -> A: Enc_P(h), column-blocked per chunk of rows, and row-blocked (training)."""

    key_id: Text
    rows: PosInt
    cols: CiphertextChunks
    row_blocked: Ciphertexts
    context: Blob  # P's new public context after a key rotation, else b""


@wire("vfl.he.masked_forward", version=1)
@dataclass(frozen=True)
class MaskedForward:
    """Step 2, A -> P: U_j = Enc_P(h) ⊗ W_A[:, j] + Enc_P(r_j), k per chunk."""

    key_id: Text
    u: CiphertextChunks


@wire("vfl.he.forward_share", version=1)
@dataclass(frozen=True)
class ForwardShare:
    """Step 3, P -> A: v = h W + Σ r (rounded/noise-flooded), rows × k."""

    v: Matrix


@wire("vfl.he.masked_gradient", version=1)
@dataclass(frozen=True)
class MaskedGradient:
    """Step 5, A -> P: Gm_j = Enc_P(h_rows) ⊗ δ[:, j] + Enc_P(R_j), and Enc_A(δ)."""

    key_id: Text  # P's key (gm)
    gm: Ciphertexts
    delta_key_id: Text  # A's key (delta)
    delta: CiphertextChunks
    context: Blob  # A's new public context after a key rotation, else b""


@wire("vfl.he.masked_backward", version=1)
@dataclass(frozen=True)
class MaskedBackward:
    """Step 6, P -> A: Y_i = Enc_A(δ) ⊗ W_P[i, :] + Enc_A(s_i), d per chunk."""

    key_id: Text
    y: CiphertextChunks


@wire("vfl.he.grad_share", version=1)
@dataclass(frozen=True)
class GradShare:
    """Step 7, A -> P: δ Wᵀ + Σ s (rounded/noise-flooded), rows × d."""

    g: Matrix


@wire("vfl.plain.activations", version=1)
@dataclass(frozen=True)
class PlainActivations:
    """Plaintext mode, P -> A: h in the clear (comparison mode only; no privacy)."""

    h: Matrix


@wire("vfl.plain.gradient", version=1)
@dataclass(frozen=True)
class PlainGradient:
    """Plaintext mode, A -> P: ∂L/∂h = δ Wᵀ."""

    g: Matrix


__all__ = [
    "MAX_CIPHERTEXTS",
    "EncActivations",
    "ForwardShare",
    "GradShare",
    "MaskedBackward",
    "MaskedForward",
    "MaskedGradient",
    "PlainActivations",
    "PlainGradient",
    "PublicContext",
]
