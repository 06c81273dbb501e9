"""Wire messages of SecAgg / SecAgg+ (frozen dataclasses registered with the codec).

Every message carries the (session, round) it belongs to; the state machines
refuse any other, so a message replayed from another round or session is a
clear error even before the AEAD check on the shares. Fixed-size items (public
keys, share ciphertexts, shares) travel as 2-D uint8 arrays, vectors as one
uint32/uint64 array. The field types are codec checks (``party.codec``): shapes and
types are checked on decode, so a malformed message fails in the codec
(``CodecError``) and never reaches protocol code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from party.codec import Array, ByteRows, Bytes, Names, NonNegInt, Text, wire
from secure_agg.keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from secure_agg.shamir import SHARE_BYTES

#: Plaintext of one encrypted share pair: Shamir share of b_u, then of the mask key.
SHARE_PAIR_BYTES = 2 * SHARE_BYTES
#: One share ciphertext: nonce || AES-GCM(share pair) || tag.
CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PAIR_BYTES + TAG_BYTES

PublicKey = Annotated[bytes, Bytes(size=KEY_BYTES)]
Seed = Annotated[bytes, Bytes(size=32)]
MaskedVector = Annotated[np.ndarray, Array((np.uint32, np.uint64), ndim=1)]


@dataclass(frozen=True, slots=True)
class InRound:
    """The (session, round) every SecAgg message starts with; the base of them all."""

    session: Text
    round: NonNegInt

    def out_of_round(self, session: str, round: int) -> str | None:
        """Why this message does not belong to round ``round`` of ``session`` (None: it does)."""
        if self.session == session and self.round == round:
            return None
        return (f"for session {self.session!r} round {self.round} (replayed or out-of-round "
                f"message; this round is session {session!r} round {round})")


@wire("secagg.advertise_keys", version=1)
@dataclass(frozen=True, slots=True)
class AdvertiseKeys(InRound):
    """Client -> server, stage 0: the round's two X25519 public keys."""

    enc_public: PublicKey
    mask_public: PublicKey


@wire("secagg.public_keys", version=1)
@dataclass(frozen=True, slots=True)
class PublicKeys(InRound):
    """Server -> clients, after stage 0: the roster (index = position + 1), keys and graph seed."""

    clients: Names
    enc_public: Annotated[np.ndarray, ByteRows(KEY_BYTES, rows_like="clients")]  # (m, 32) uint8
    mask_public: Annotated[np.ndarray, ByteRows(KEY_BYTES, rows_like="clients")]
    graph_seed: Seed


@wire("secagg.encrypted_shares", version=1)
@dataclass(frozen=True, slots=True)
class EncryptedShares(InRound):
    """Client -> server, stage 1: one share ciphertext per neighbour (row i for dsts[i])."""

    dsts: Names
    ciphertexts: Annotated[np.ndarray, ByteRows(CIPHERTEXT_BYTES, rows_like="dsts")]


@wire("secagg.forwarded_shares", version=1)
@dataclass(frozen=True, slots=True)
class ForwardedShares(InRound):
    """Server -> client, after stage 1: the ciphertexts addressed to it (row i from srcs[i])."""

    srcs: Names
    ciphertexts: Annotated[np.ndarray, ByteRows(CIPHERTEXT_BYTES, rows_like="srcs")]


@wire("secagg.masked_input", version=1)
@dataclass(frozen=True, slots=True)
class MaskedInput(InRound):
    """Client -> server, stage 2: y_u = [w_u q(x_u), w_u] + masks, mod 2**bits."""

    y: MaskedVector  # (d + 1,) uint32 or uint64


@wire("secagg.unmask_request", version=1)
@dataclass(frozen=True, slots=True)
class UnmaskRequest(InRound):
    """Server -> client, after stage 2: which of its holders' peers survived or dropped."""

    survivors: Names
    dropped: Names


@wire("secagg.unmask_shares", version=1)
@dataclass(frozen=True, slots=True)
class UnmaskShares(InRound):
    """Client -> server, stage 3: self-mask shares of survivors, mask-key shares of the dropped."""

    survivors: Names
    self_mask_shares: Annotated[np.ndarray, ByteRows(SHARE_BYTES, rows_like="survivors")]
    dropped: Names
    mask_key_shares: Annotated[np.ndarray, ByteRows(SHARE_BYTES, rows_like="dropped")]


@wire("secagg.excluded", version=1)
@dataclass(frozen=True, slots=True)
class Excluded(InRound):
    """Server -> client: the round goes on without you (you were late or sent something invalid)."""

    reason: Text


@wire("secagg.abort", version=1)
@dataclass(frozen=True, slots=True)
class Abort(InRound):
    """Server -> clients: the round is aborted (fewer than the threshold remain); nothing applied."""

    reason: Text


@wire("secagg.finished", version=1)
@dataclass(frozen=True, slots=True)
class Finished(InRound):
    """Server -> clients: the round completed over ``num_survivors`` inputs."""

    num_survivors: NonNegInt
