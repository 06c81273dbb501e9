"""Re-export: CKKS parameters and keys live in :mod:`he.params` and :mod:`he.keys`."""

from he.keys import *  # noqa: F403
from he.keys import __all__ as _keys
from he.params import *  # noqa: F403
from he.params import __all__ as _params

__all__ = sorted(_params + _keys)
