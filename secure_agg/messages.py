"""Wire messages of SecAgg / SecAgg+ (frozen dataclasses registered with the codec).

Every message carries the (session, round) it belongs to; the state machines
refuse any other, so a message replayed from another round or session is a
clear error even before the AEAD check on the shares. Fixed-size items (public
keys, share ciphertexts, shares) travel as 2-D uint8 arrays, vectors as one
uint32/uint64 array. ``__post_init__`` checks shapes and types, so a malformed
message fails in the codec (``CodecError``) and never reaches protocol code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from party.codec import wire
from secure_agg.keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from secure_agg.shamir import SHARE_BYTES

#: Plaintext of one encrypted share pair: Shamir share of b_u, then of the mask key.
SHARE_PAIR_BYTES = 2 * SHARE_BYTES
#: One share ciphertext: nonce || AES-GCM(share pair) || tag.
CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PAIR_BYTES + TAG_BYTES


def _check_ids(ids: object, what: str) -> None:
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"{what} must be a list of non-empty str")


def _check_rows(a: object, rows: int, cols: int, what: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != (rows, cols):
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{what} must be a uint8 array of shape ({rows}, {cols}), got {got}")


def _check_head(session: object, round: object) -> None:
    if not isinstance(session, str):
        raise ValueError("session must be a str")
    if not isinstance(round, int) or isinstance(round, bool) or round < 0:
        raise ValueError("round must be an int >= 0")


@wire("secagg.advertise_keys", version=1)
@dataclass(frozen=True, slots=True)
class AdvertiseKeys:
    """Client -> server, stage 0: the round's two X25519 public keys."""

    session: str
    round: int
    enc_public: bytes
    mask_public: bytes

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        for k in (self.enc_public, self.mask_public):
            if not isinstance(k, bytes) or len(k) != KEY_BYTES:
                raise ValueError(f"public keys must be {KEY_BYTES} bytes")


@wire("secagg.public_keys", version=1)
@dataclass(frozen=True, slots=True)
class PublicKeys:
    """Server -> clients, after stage 0: the roster (index = position + 1), keys and graph seed."""

    session: str
    round: int
    clients: list[str]
    enc_public: np.ndarray  # (m, 32) uint8
    mask_public: np.ndarray  # (m, 32) uint8
    graph_seed: bytes

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        _check_ids(self.clients, "clients")
        m = len(self.clients)
        _check_rows(self.enc_public, m, KEY_BYTES, "enc_public")
        _check_rows(self.mask_public, m, KEY_BYTES, "mask_public")
        if not isinstance(self.graph_seed, bytes) or len(self.graph_seed) != 32:
            raise ValueError("graph_seed must be 32 bytes")


@wire("secagg.encrypted_shares", version=1)
@dataclass(frozen=True, slots=True)
class EncryptedShares:
    """Client -> server, stage 1: one share ciphertext per neighbour (row i for dsts[i])."""

    session: str
    round: int
    dsts: list[str]
    ciphertexts: np.ndarray  # (len(dsts), CIPHERTEXT_BYTES) uint8

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        _check_ids(self.dsts, "dsts")
        _check_rows(self.ciphertexts, len(self.dsts), CIPHERTEXT_BYTES, "ciphertexts")


@wire("secagg.forwarded_shares", version=1)
@dataclass(frozen=True, slots=True)
class ForwardedShares:
    """Server -> client, after stage 1: the ciphertexts addressed to it (row i from srcs[i])."""

    session: str
    round: int
    srcs: list[str]
    ciphertexts: np.ndarray  # (len(srcs), CIPHERTEXT_BYTES) uint8

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        _check_ids(self.srcs, "srcs")
        _check_rows(self.ciphertexts, len(self.srcs), CIPHERTEXT_BYTES, "ciphertexts")


@wire("secagg.masked_input", version=1)
@dataclass(frozen=True, slots=True)
class MaskedInput:
    """Client -> server, stage 2: y_u = [w_u q(x_u), w_u] + masks, mod 2**bits."""

    session: str
    round: int
    y: np.ndarray  # (d + 1,) uint32 or uint64

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        if not isinstance(self.y, np.ndarray) or self.y.ndim != 1:
            raise ValueError("y must be a 1-D array")
        if self.y.dtype not in (np.dtype(np.uint32), np.dtype(np.uint64)):
            raise ValueError(f"y must be uint32 or uint64, got {self.y.dtype}")


@wire("secagg.unmask_request", version=1)
@dataclass(frozen=True, slots=True)
class UnmaskRequest:
    """Server -> client, after stage 2: which of its holders' peers survived or dropped."""

    session: str
    round: int
    survivors: list[str]
    dropped: list[str]

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        _check_ids(self.survivors, "survivors")
        _check_ids(self.dropped, "dropped")


@wire("secagg.unmask_shares", version=1)
@dataclass(frozen=True, slots=True)
class UnmaskShares:
    """Client -> server, stage 3: self-mask shares of survivors, mask-key shares of the dropped."""

    session: str
    round: int
    survivors: list[str]
    self_mask_shares: np.ndarray  # (len(survivors), SHARE_BYTES) uint8
    dropped: list[str]
    mask_key_shares: np.ndarray  # (len(dropped), SHARE_BYTES) uint8

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
        _check_ids(self.survivors, "survivors")
        _check_ids(self.dropped, "dropped")
        _check_rows(self.self_mask_shares, len(self.survivors), SHARE_BYTES, "self_mask_shares")
        _check_rows(self.mask_key_shares, len(self.dropped), SHARE_BYTES, "mask_key_shares")


@wire("secagg.excluded", version=1)
@dataclass(frozen=True, slots=True)
class Excluded:
    """Server -> client: the round goes on without you (you were late or sent something invalid)."""

    session: str
    round: int
    reason: str

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)


@wire("secagg.abort", version=1)
@dataclass(frozen=True, slots=True)
class Abort:
    """Server -> clients: the round is aborted (fewer than the threshold remain); nothing applied."""

    session: str
    round: int
    reason: str

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)


@wire("secagg.finished", version=1)
@dataclass(frozen=True, slots=True)
class Finished:
    """Server -> clients: the round completed over ``num_survivors`` inputs."""

    session: str
    round: int
    num_survivors: int

    def __post_init__(self) -> None:
        _check_head(self.session, self.round)
