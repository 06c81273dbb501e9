"""The Ray backend's first name: :mod:`hfl.ray` is the package now (cluster start-up, the
actor side, the driver's lanes and engine); this module keeps ``hfl.ray_backend`` imports
working."""

from __future__ import annotations

from hfl.ray import (
    DEFAULT_CLIENT_RESOURCES,
    RAY_VERSION,
    check_client_resources,
    describe_failure,
    pool_size,
    simulate_on_ray,
    start_ray,
    stop_ray,
)

__all__ = [
    "DEFAULT_CLIENT_RESOURCES",
    "RAY_VERSION",
    "check_client_resources",
    "describe_failure",
    "pool_size",
    "simulate_on_ray",
    "start_ray",
    "stop_ray",
]
