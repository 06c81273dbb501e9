"""Wire messages of the FTL protocol (see ``ftl.protocol`` for the steps).

Ciphertexts travel as SEAL-serialized ``bytes`` (size/level-checked by
``he.keys`` before SEAL sees them); released decryptions travel as float64 arrays.
The field checks are ``he.messages``'s, with FTL's own ciphertext cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from he.messages import check_cts, check_matrix
from party import wire

MAX_CIPHERTEXTS = 1 << 12


def _cts(name: str, cts: object) -> None:
    check_cts(name, cts, MAX_CIPHERTEXTS)


def _step(epoch: object, step: object) -> None:
    if not isinstance(epoch, int) or not isinstance(step, int) or epoch < 0 or step < 0:
        raise ValueError(f"epoch/step must be non-negative ints, got {epoch!r}/{step!r}")


@wire("ftl.hello", version=1)
@dataclass(frozen=True)
class Hello:
    """Both ways, once: who I am, what I hold, my public CKKS context (never the secret key)."""

    role: str          # "guest" (A, labels) or "host" (B)
    has_labels: bool
    params: dict       # type: ignore[type-arg]  # FtlParams.as_dict()
    n_overlap: int
    width: int         # K: this party's activation width (the peer sizes its packing)
    start_epoch: int   # first epoch this party will train (from its checkpoint)
    context: bytes
    key_id: str

    def __post_init__(self) -> None:
        if self.role not in ("guest", "host"):
            raise ValueError(f"role must be 'guest' or 'host', got {self.role!r}")
        if not isinstance(self.params, dict):
            raise ValueError("params must be a dict")
        for f in ("n_overlap", "width", "start_epoch"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{f} must be a non-negative int, got {v!r}")


@wire("ftl.host_forward", version=2)
@dataclass(frozen=True)
class HostForward:
    """Step 1, B -> A: Enc_B(U_B), Enc_B(U_BᵀU_B / n), Enc_B(b), Enc_B(U_Bᵀb / n)."""

    epoch: int
    step: int
    key_id: str
    x: list[bytes]     # U_B, U_BᵀU_B/n, b, U_Bᵀb/n packed together (ftl.he.Packing)
    stats: np.ndarray  # (1, 2): Σ‖u_B‖², ‖θ_B‖² (for the loss value only)
    context: bytes     # B's new public context after a key rotation, else b""

    def __post_init__(self) -> None:
        _step(self.epoch, self.step)
        _cts("x", self.x)
        check_matrix("stats", self.stats)
        if self.stats.shape != (1, 2):
            raise ValueError("stats must be 1 × 2")


@wire("ftl.guest_forward", version=2)
@dataclass(frozen=True)
class GuestForward:
    """Step 2, A -> B, under B's key: Enc_B(U_Bᵀ[a, Y] + R1), Enc_B(SΦᵀ/n + R2) (uniform
    masks), Enc_B(bᵀC + Z1), Enc_B((M/n)ᵀQ + Z2) (zero-sum masks), packed together."""

    epoch: int
    step: int
    prod: list[bytes]  # products of HostForward.x (ftl.he.masked_product_many)

    def __post_init__(self) -> None:
        _step(self.epoch, self.step)
        _cts("prod", self.prod)


@wire("ftl.host_backward", version=2)
@dataclass(frozen=True)
class HostBackward:
    """Step 3, B -> A: the released (rounded, flooded) masked sums of A's two products."""

    epoch: int
    step: int
    t_sum: np.ndarray
    s_phi_sum: np.ndarray

    def __post_init__(self) -> None:
        _step(self.epoch, self.step)
        check_matrix("t_sum", self.t_sum)
        check_matrix("s_phi_sum", self.s_phi_sum)


@wire("ftl.guest_backward", version=2)
@dataclass(frozen=True)
class GuestBackward:
    """Step 4, A -> B: the step's loss (B's side of the step is done by then)."""

    epoch: int
    step: int
    loss: float

    def __post_init__(self) -> None:
        _step(self.epoch, self.step)
        if not isinstance(self.loss, float) or not np.isfinite(self.loss):
            raise ValueError("loss must be a finite float")


@wire("ftl.predict_request", version=1)
@dataclass(frozen=True)
class PredictRequest:
    """Prediction step 1, B -> A: B will score ``rows`` rows."""

    rows: int

    def __post_init__(self) -> None:
        if not isinstance(self.rows, int) or self.rows < 1:
            raise ValueError(f"rows must be a positive int, got {self.rows!r}")


@wire("ftl.enc_phi", version=1)
@dataclass(frozen=True)
class EncPhi:
    """Prediction step 2, A -> B: Enc_A(Φ)."""

    key_id: str
    phi: list[bytes]
    context: bytes

    def __post_init__(self) -> None:
        _cts("phi", self.phi)


@wire("ftl.predict_masked", version=1)
@dataclass(frozen=True)
class PredictMasked:
    """Prediction step 3, B -> A: Enc_A(Φ·u_j + r_j) for each row j."""

    scores: list[bytes]

    def __post_init__(self) -> None:
        _cts("scores", self.scores)


@wire("ftl.predict_sums", version=1)
@dataclass(frozen=True)
class PredictSums:
    """Prediction step 4, A -> B: the released masked scores (L × rows; L = 1 for binary)."""

    scores: np.ndarray

    def __post_init__(self) -> None:
        check_matrix("scores", self.scores)


__all__ = [
    "EncPhi",
    "GuestBackward",
    "GuestForward",
    "Hello",
    "HostBackward",
    "HostForward",
    "PredictMasked",
    "PredictRequest",
    "PredictSums",
]
