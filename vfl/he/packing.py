"""Re-export: the slot layouts of the split layer live in :mod:`he.packing`."""

from he.packing import *  # noqa: F403
from he.packing import __all__ as __all__
