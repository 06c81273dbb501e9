"""The Ray backend's first name: :mod:`hfl.ray` is the package now (cluster start-up, the
actor side, the driver's lanes and engine); this module keeps ``hfl.ray_backend`` imports
working, with exactly :mod:`hfl.ray`'s public names."""

from __future__ import annotations

from hfl.ray import *  # noqa: F403  (the public names, one list: hfl.ray.__all__)
from hfl.ray import __all__ as __all__
