"""Wire pieces both CKKS protocols share: the public-context message and the field types.

Ciphertexts travel as SEAL-serialized ``bytes``. The field types here are codec
checks (:mod:`party.codec`), applied when a message is decoded: how many
ciphertexts arrive (one cap, :data:`MAX_CIPHERTEXTS`, for every CKKS protocol) and
that each is ``bytes``; their size, header and level are checked by
:meth:`he.keys.CkksPeer.load_ciphertext` before SEAL parses them. Decrypted-and-released
values travel as finite float64 matrices (:data:`Matrix`).
The protocol messages themselves are in ``vfl.he.messages`` and ``ftl.messages``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from party import wire
from party.codec import Array, Blob, Text
from party.codec import Ciphertexts as _Ciphertexts

#: The cap on the ciphertexts in one message field (and on its chunks), for every protocol.
MAX_CIPHERTEXTS = 1 << 14

#: A list of at most MAX_CIPHERTEXTS serialized ciphertexts.
Ciphertexts = Annotated[list[bytes], _Ciphertexts(cap=MAX_CIPHERTEXTS)]
#: A list of at most MAX_CIPHERTEXTS chunks, each a :data:`Ciphertexts` list.
CiphertextChunks = Annotated[list[list[bytes]], _Ciphertexts(cap=MAX_CIPHERTEXTS, chunked=True)]
#: A finite 2-d float64 array (a released decryption, or plaintext values).
Matrix = Annotated[np.ndarray, Array((np.float64,), ndim=2, finite=True)]


@wire("vfl.he.public_context", version=1)
@dataclass(frozen=True)
class PublicContext:
    """Either party -> peer: CKKS parameters + public key, never the secret key."""

    context: Blob
    key_id: Text


__all__ = [
    "MAX_CIPHERTEXTS",
    "CiphertextChunks",
    "Ciphertexts",
    "Matrix",
    "PublicContext",
]
