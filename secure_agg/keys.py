"""X25519 key agreement, HKDF, and AES-GCM for the encrypted Shamir shares.

Each client makes two X25519 key pairs per round: ``enc`` (to encrypt shares
to its neighbours) and ``mask`` (whose pairwise agreements seed the masks).
Share ciphertexts are AES-256-GCM under HKDF(X25519(enc_u, enc_v)) with
associated data binding (session, round, stage, src, dst): a share moved to
another pair, round or session fails authentication (threats.md row 9).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from party.errors import RemoteProtocolError
from secure_agg.prg import DOMAIN, context, hkdf

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class ShareDecryptionError(RemoteProtocolError):
    """A share ciphertext failed authentication: tampered, misrouted or replayed."""


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair as raw 32-byte strings."""

    public: bytes
    secret: bytes = field(repr=False)  # never in logs or reprs


def generate_keypair() -> KeyPair:
    """A fresh X25519 key pair."""
    sk = X25519PrivateKey.generate()
    return KeyPair(
        public=sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        secret=sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
    )


def public_from_secret(secret: bytes) -> bytes:
    """The X25519 public key of a raw 32-byte secret."""
    sk = X25519PrivateKey.from_private_bytes(secret)
    return sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def agree(secret: bytes, peer_public: bytes) -> bytes:
    """Raw X25519 shared secret; refuses low-order peer keys (all-zero output)."""
    try:
        out = X25519PrivateKey.from_private_bytes(secret).exchange(
            X25519PublicKey.from_public_bytes(peer_public)
        )
    except ValueError as e:
        raise RemoteProtocolError(f"invalid X25519 public key: {e}") from None
    if out == bytes(KEY_BYTES):
        raise RemoteProtocolError("X25519 public key of low order (all-zero shared secret)")
    return out


def share_key(shared: bytes, *, session: str, round: int, a: str, b: str) -> bytes:
    """AES-GCM key for shares between ``a`` and ``b`` (order-insensitive)."""
    lo, hi = sorted((a, b))
    return hkdf(shared, DOMAIN + context("share-encryption", session, round, lo, hi))


def associated_data(*, session: str, round: int, stage: str, src: str, dst: str) -> bytes:
    """AEAD associated data: binds a ciphertext to one (session, round, stage, src, dst)."""
    return DOMAIN + context("aad", session, round, stage, src, dst)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || AES-256-GCM(plaintext, aad) with a random 96-bit nonce (keys are per round)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes, *, what: str) -> bytes:
    """Inverse of :func:`seal`; raises :class:`ShareDecryptionError` on any mismatch."""
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise ShareDecryptionError(f"{what}: ciphertext of {len(blob)} bytes is too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ShareDecryptionError(
            f"{what}: share ciphertext failed authentication (tampered, misrouted, or replayed "
            "from another session/round)"
        ) from None
