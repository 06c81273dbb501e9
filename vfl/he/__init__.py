"""CKKS interactive layer of vertical split learning (shared/design/vfl_he.md).

The split layer's protocol is :mod:`vfl.he.layer` and its messages
:mod:`vfl.he.messages`; the CKKS parameters, keys, kernel and packing it builds on
are the top-level :mod:`he` package (``vfl.he.context`` and ``vfl.he.packing``
re-export them under their old names).

Import cost: this package loads TenSEAL; ``vfl`` itself does not import it.
"""

from he.keys import CkksKeys, CkksPeer, load_public, public_bytes
from he.params import CkksParams, DecryptionLimit, DecryptionRangeError, HeError, KeyMismatch
from vfl.he.layer import ActiveLayer, PassiveLayer, Stage

__all__ = [
    "ActiveLayer",
    "CkksKeys",
    "CkksParams",
    "CkksPeer",
    "DecryptionLimit",
    "DecryptionRangeError",
    "HeError",
    "KeyMismatch",
    "PassiveLayer",
    "Stage",
    "load_public",
    "public_bytes",
]
