"""CKKS homomorphic encryption for two-party protocols (ciphertext × plaintext only).

Layering: ``he`` imports only ``party``; ``vfl.he`` (the split layer) and ``ftl``
(transfer learning) build on it. Modules:

* :mod:`he.params` - :class:`CkksParams` (checked against the HE standard) and errors;
* :mod:`he.keys` - key pairs, the peer's public view, checked (de)serialization;
* :mod:`he.ops` - the masked product kernel and ``release`` (flooding, rounding);
* :mod:`he.packing` - slot layouts (pure numpy);
* :mod:`he.messages` - the public-context message and the ciphertext/matrix field types
  (codec checks, one ciphertext cap);
* :mod:`he.endpoint` - :class:`Endpoint`, the base of a protocol side: keys, peer
  context, rotation, key-id checks, stage guard. A new CKKS protocol subclasses it
  and keeps its own steps and its "what each party learns" next to them.

Import cost: this package loads TenSEAL.
"""

from he.endpoint import Endpoint
from he.keys import CkksKeys, CkksPeer, key_id_of, load_public, public_bytes
from he.messages import PublicContext
from he.ops import masked_dot, release, rescaled_scale
from he.params import (
    HE_STD_128_MAX_LOGQ,
    CkksParams,
    DecryptionLimit,
    DecryptionRangeError,
    HeError,
    KeyMismatch,
)

__all__ = [
    "HE_STD_128_MAX_LOGQ",
    "CkksKeys",
    "CkksParams",
    "CkksPeer",
    "DecryptionLimit",
    "DecryptionRangeError",
    "Endpoint",
    "HeError",
    "KeyMismatch",
    "PublicContext",
    "key_id_of",
    "load_public",
    "masked_dot",
    "public_bytes",
    "release",
    "rescaled_scale",
]
