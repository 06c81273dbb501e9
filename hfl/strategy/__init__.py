"""``hfl.strategy``: the same objects as :mod:`hfl.server.strategy` (tessera's shorter path)."""

from hfl.server.strategy import *  # noqa: F403
from hfl.server.strategy import __all__ as __all__
