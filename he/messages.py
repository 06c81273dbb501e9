"""Wire pieces both CKKS protocols share: the public-context message and field checks.

Ciphertexts travel as SEAL-serialized ``bytes``; the checks here bound how many
arrive and that each is ``bytes`` before anything else looks at them (their size,
header and level are checked by :meth:`he.keys.CkksPeer.load_ciphertext` before
SEAL parses them). Decrypted-and-released values travel as finite float64 matrices.
The protocol messages themselves are in ``vfl.he.messages`` and ``ftl.messages``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from party import wire


@wire("vfl.he.public_context", version=1)
@dataclass(frozen=True)
class PublicContext:
    """Either party -> peer: CKKS parameters + public key, never the secret key."""

    context: bytes
    key_id: str


#: Default cap on the ciphertexts in one message field.
MAX_CIPHERTEXTS = 1 << 14


def check_cts(name: str, cts: object, cap: int = MAX_CIPHERTEXTS) -> None:
    """A list of at most ``cap`` serialized ciphertexts (``bytes``)."""
    if not isinstance(cts, list) or len(cts) > cap:
        raise ValueError(f"{name}: expected a list of at most {cap} ciphertexts")
    for c in cts:
        if not isinstance(c, (bytes, bytearray)):
            raise ValueError(f"{name}: ciphertexts must be bytes, got {type(c).__name__}")


def check_chunks(name: str, chunks: object, cap: int = MAX_CIPHERTEXTS) -> None:
    """A list of at most ``cap`` chunks, each a :func:`check_cts` list."""
    if not isinstance(chunks, list) or len(chunks) > cap:
        raise ValueError(f"{name}: expected a list of chunks")
    for ch in chunks:
        check_cts(name, ch, cap)


def check_matrix(name: str, a: object) -> None:
    """A finite 2-d float64 array."""
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != np.float64:
        raise ValueError(f"{name}: expected a 2-d float64 array")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or Inf")


__all__ = [
    "MAX_CIPHERTEXTS",
    "PublicContext",
    "check_chunks",
    "check_cts",
    "check_matrix",
]
