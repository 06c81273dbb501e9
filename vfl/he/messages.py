"""Wire messages of the CKKS interactive layer (vfl_he.md steps 1–7).

Ciphertexts travel as SEAL-serialized ``bytes`` (size-checked by the receiver
before deserializing); decrypted-and-returned values travel as float64 arrays.
Every ciphertext-carrying message names the key it was made under (``key_id``).
``PublicContext`` and the field checks are shared with FTL (:mod:`he.messages`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from he.messages import MAX_CIPHERTEXTS, PublicContext, check_chunks, check_cts, check_matrix
from party import wire


@wire("vfl.he.enc_activations", version=1)
@dataclass(frozen=True)
class EncActivations:
    """Step 1, P -> A: Enc_P(h), column-blocked per chunk of rows, and row-blocked (training)."""

    key_id: str
    rows: int
    cols: list[list[bytes]]
    row_blocked: list[bytes]
    context: bytes  # P's new public context after a key rotation, else b""

    def __post_init__(self) -> None:
        check_chunks("cols", self.cols)
        check_cts("row_blocked", self.row_blocked)
        if not isinstance(self.rows, int) or self.rows < 1:
            raise ValueError(f"rows must be a positive int, got {self.rows!r}")


@wire("vfl.he.masked_forward", version=1)
@dataclass(frozen=True)
class MaskedForward:
    """Step 2, A -> P: U_j = Enc_P(h) ⊗ W_A[:, j] + Enc_P(r_j), k per chunk."""

    key_id: str
    u: list[list[bytes]]

    def __post_init__(self) -> None:
        check_chunks("u", self.u)


@wire("vfl.he.forward_share", version=1)
@dataclass(frozen=True)
class ForwardShare:
    """Step 3, P -> A: v = h W + Σ r (rounded/noise-flooded), rows × k."""

    v: np.ndarray

    def __post_init__(self) -> None:
        check_matrix("v", self.v)


@wire("vfl.he.masked_gradient", version=1)
@dataclass(frozen=True)
class MaskedGradient:
    """Step 5, A -> P: Gm_j = Enc_P(h_rows) ⊗ δ[:, j] + Enc_P(R_j), and Enc_A(δ)."""

    key_id: str  # P's key (gm)
    gm: list[bytes]
    delta_key_id: str  # A's key (delta)
    delta: list[list[bytes]]
    context: bytes  # A's new public context after a key rotation, else b""

    def __post_init__(self) -> None:
        check_cts("gm", self.gm)
        check_chunks("delta", self.delta)


@wire("vfl.he.masked_backward", version=1)
@dataclass(frozen=True)
class MaskedBackward:
    """Step 6, P -> A: Y_i = Enc_A(δ) ⊗ W_P[i, :] + Enc_A(s_i), d per chunk."""

    key_id: str
    y: list[list[bytes]]

    def __post_init__(self) -> None:
        check_chunks("y", self.y)


@wire("vfl.he.grad_share", version=1)
@dataclass(frozen=True)
class GradShare:
    """Step 7, A -> P: δ Wᵀ + Σ s (rounded/noise-flooded), rows × d."""

    g: np.ndarray

    def __post_init__(self) -> None:
        check_matrix("g", self.g)


@wire("vfl.plain.activations", version=1)
@dataclass(frozen=True)
class PlainActivations:
    """Plaintext mode, P -> A: h in the clear (comparison mode only; no privacy)."""

    h: np.ndarray

    def __post_init__(self) -> None:
        check_matrix("h", self.h)


@wire("vfl.plain.gradient", version=1)
@dataclass(frozen=True)
class PlainGradient:
    """Plaintext mode, A -> P: ∂L/∂h = δ Wᵀ."""

    g: np.ndarray

    def __post_init__(self) -> None:
        check_matrix("g", self.g)


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
