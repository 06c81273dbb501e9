"""CKKS interactive layer of vertical split learning (shared/design/vfl_he.md).

Import cost: this package loads TenSEAL; ``vfl`` itself does not import it.
"""

from vfl.he.context import (
    CkksKeys,
    CkksParams,
    CkksPeer,
    DecryptionLimit,
    DecryptionRangeError,
    HeError,
    KeyMismatch,
    load_public,
    public_bytes,
)
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
