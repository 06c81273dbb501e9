"""Wire messages of the FTL protocol (see ``ftl.protocol`` for the steps).

Ciphertexts travel as SEAL-serialized ``bytes`` (size/level-checked by
``he.keys`` before SEAL sees them); released decryptions travel as float64 arrays.
The field types are codec checks (``party.codec``, applied on decode), the CKKS ones
and their one ciphertext cap from ``he.messages``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from he.messages import Ciphertexts, Matrix
from party import wire
from party.codec import Array, Blob, FiniteFloat, Flag, Int, NonNegInt, PosInt, Record, Str, Text

#: The loss-value statistics of a host step: Σ‖u_B‖², ‖θ_B‖².
Stats = Annotated[np.ndarray, Array((np.float64,), shape=(1, 2), finite=True)]


@wire("ftl.hello", version=1)
@dataclass(frozen=True)
class Hello:
    """Both ways, once: who I am, what I hold, my public CKKS context (never the secret key)."""

    role: Annotated[str, Str(one_of=("guest", "host"))]  # A (labels) or B
    has_labels: Flag
    params: Record     # FtlParams.as_dict()
    n_overlap: NonNegInt
    width: NonNegInt   # K: this party's activation width (the peer sizes its packing)
    start_epoch: NonNegInt  # first epoch this party will train (from its checkpoint)
    context: Blob
    key_id: Text


@dataclass(frozen=True)
class StepMessage:
    """The (epoch, step) of the training step a message belongs to: the first fields of the
    four step messages, which each side checks against the step it is in."""

    epoch: NonNegInt
    step: NonNegInt


@wire("ftl.host_forward", version=2)
@dataclass(frozen=True)
class HostForward(StepMessage):
    """Step 1, B -> A: Enc_B(U_B), Enc_B(U_BᵀU_B / n), Enc_B(b), Enc_B(U_Bᵀb / n)."""

    key_id: Text
    x: Ciphertexts     # U_B, U_BᵀU_B/n, b, U_Bᵀb/n packed together (ftl.he.Packing)
    stats: Stats       # (1, 2): Σ‖u_B‖², ‖θ_B‖² (for the loss value only)
    context: Blob      # B's new public context after a key rotation, else b""


@wire("ftl.guest_forward", version=2)
@dataclass(frozen=True)
class GuestForward(StepMessage):
    """Step 2, A -> B, under B's key: Enc_B(U_Bᵀ[a, Y] + R1), Enc_B(SΦᵀ/n + R2) (uniform
    masks), Enc_B(bᵀC + Z1), Enc_B((M/n)ᵀQ + Z2) (zero-sum masks), packed together."""

    prod: Ciphertexts  # products of HostForward.x (ftl.he.masked_product_many)


@wire("ftl.host_backward", version=2)
@dataclass(frozen=True)
class HostBackward(StepMessage):
    """Step 3, B -> A: the released (rounded, flooded) masked sums of A's two products."""

    t_sum: Matrix
    s_phi_sum: Matrix


@wire("ftl.guest_backward", version=2)
@dataclass(frozen=True)
class GuestBackward(StepMessage):
    """Step 4, A -> B: the step's loss (B's side of the step is done by then)."""

    loss: FiniteFloat


@wire("ftl.predict_request", version=1)
@dataclass(frozen=True)
class PredictRequest:
    """Prediction step 1, B -> A: B will score ``rows`` rows."""

    rows: PosInt


@wire("ftl.enc_phi", version=1)
@dataclass(frozen=True)
class EncPhi:
    """Prediction step 2, A -> B: Enc_A(Φ)."""

    key_id: Text
    phi: Ciphertexts
    context: Blob


@wire("ftl.predict_masked", version=1)
@dataclass(frozen=True)
class PredictMasked:
    """Prediction step 3, B -> A: Enc_A(Φ·u_j + r_j) for each row j."""

    scores: Ciphertexts


@wire("ftl.predict_sums", version=1)
@dataclass(frozen=True)
class PredictSums:
    """Prediction step 4, A -> B: the released masked scores (L × rows; L = 1 for binary)."""

    scores: Matrix


#: The most prediction rounds a host may announce (``predict_ftl``).
MAX_PREDICT_ROUNDS = 1 << 16


@wire("ftl.predict_rounds", version=1)
@dataclass(frozen=True)
class PredictRounds:
    """Prediction setup, B -> A: how many rounds (``PredictRequest`` ... ``PredictSums``) follow."""

    rounds: Annotated[int, Int(min=0, max=MAX_PREDICT_ROUNDS)]


@wire("ftl.done", version=1)
@dataclass(frozen=True)
class Done:
    """End of training, both ways: this party has trained ``epochs`` epochs and written its
    checkpoint (neither leaves before the other is done)."""

    epochs: NonNegInt


__all__ = [
    "MAX_PREDICT_ROUNDS",
    "Done",
    "EncPhi",
    "GuestBackward",
    "GuestForward",
    "Hello",
    "HostBackward",
    "HostForward",
    "PredictMasked",
    "PredictRequest",
    "PredictRounds",
    "PredictSums",
    "StepMessage",
]
