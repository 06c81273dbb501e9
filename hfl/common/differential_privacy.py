"""Flower's differential-privacy helpers (``flwr.common.differential_privacy``), same names.

Clipping is FlatClip (McMahan et al. 2018, arXiv 1710.06963): the whole update, all
layers flattened, is scaled down to L2 norm at most ``clipping_norm``. Noise is drawn
from a generator seeded by the operating system, never from anything a peer knows.
"""

from __future__ import annotations

import numpy as np

from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import NDArrays, Parameters

KEY_CLIPPING_NORM = "clipping_norm"
KEY_NORM_BIT = "norm_bit"
CLIENTS_DISCREPANCY_WARNING = (
    "The number of clients returning parameters (%s)"
    " differs from the number of sampled clients (%s)."
    " This could impact the differential privacy guarantees,"
    " potentially leading to privacy leakage or inadequate noise calibration."
)

_rng = np.random.default_rng()


def get_norm(input_arrays: NDArrays) -> float:
    """The L2 norm of all arrays flattened into one vector."""
    return float(np.sqrt(sum(float(np.linalg.norm(np.ravel(a))) ** 2 for a in input_arrays)))


def add_gaussian_noise_inplace(input_arrays: NDArrays, std_dev: float) -> None:
    """Add ``N(0, std_dev²)`` to every element, in place."""
    for a in input_arrays:
        a += _rng.normal(0.0, std_dev, a.shape).astype(a.dtype)


def clip_inputs_inplace(input_arrays: NDArrays, clipping_norm: float) -> None:
    """Scale the arrays so that their joint L2 norm is at most ``clipping_norm``."""
    adaptive_clip_inputs_inplace(input_arrays, clipping_norm)


def adaptive_clip_inputs_inplace(input_arrays: NDArrays, clipping_norm: float) -> bool:
    """Clip in place; True when the input was scaled down (its norm exceeded the bound)."""
    norm = get_norm(input_arrays)
    factor = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    for a in input_arrays:
        a *= factor
    return factor < 1


def compute_stdv(noise_multiplier: float, clipping_norm: float, num_sampled_clients: int) -> float:
    """The noise std added to the *mean* of ``num_sampled_clients`` clipped updates."""
    return float(noise_multiplier * clipping_norm / num_sampled_clients)


def compute_clip_model_update(param1: NDArrays, param2: NDArrays, clipping_norm: float) -> None:
    """``param1 <- param2 + clip(param1 - param2)`` in place."""
    compute_adaptive_clip_model_update(param1, param2, clipping_norm)


def compute_adaptive_clip_model_update(
    param1: NDArrays, param2: NDArrays, clipping_norm: float
) -> bool:
    """``param1 <- param2 + clip(param1 - param2)``; True when the update was clipped."""
    if len(param1) != len(param2):
        raise ValueError(f"the update has {len(param1)} arrays, the model {len(param2)}")
    update = [np.subtract(x, y) for x, y in zip(param1, param2, strict=True)]
    bit = adaptive_clip_inputs_inplace(update, clipping_norm)
    for i, base in enumerate(param2):
        param1[i] = base + update[i]
    return bit


def add_gaussian_noise_to_params(
    model_params: Parameters, noise_multiplier: float, clipping_norm: float,
    num_sampled_clients: int,
) -> Parameters:
    """The parameters with ``N(0, compute_stdv(...)²)`` added to every element."""
    arrays = parameters_to_ndarrays(model_params)
    add_gaussian_noise_inplace(
        arrays, compute_stdv(noise_multiplier, clipping_norm, num_sampled_clients)
    )
    return ndarrays_to_parameters(arrays)


def compute_adaptive_noise_params(
    noise_multiplier: float, num_sampled_clients: float, clipped_count_stddev: float | None
) -> tuple[float, float]:
    """``(clipped_count_stddev, update noise multiplier)`` for adaptive clipping.

    Andrew et al. (arXiv 1905.03871, Thm. 1): spending part of the budget on the noised
    count leaves ``z_Δ = (z⁻² - (2σ_b)⁻²)^(-1/2)`` for the update, so that the pair is
    as private as the Gaussian mechanism with multiplier ``z``.
    """
    if noise_multiplier > 0:
        if clipped_count_stddev is None:
            clipped_count_stddev = num_sampled_clients / 20
        if noise_multiplier >= 2 * clipped_count_stddev:
            raise ValueError(
                f"clipped_count_stddev ({clipped_count_stddev}) is too low for the noise "
                f"multiplier {noise_multiplier}: it must exceed noise_multiplier/2 "
                "(by default it is num_sampled_clients/20); raise clipped_count_stddev or "
                "lower noise_multiplier"
            )
        z = (noise_multiplier**-2 - (2 * clipped_count_stddev) ** -2) ** -0.5
        return float(clipped_count_stddev), float(z)
    return float(clipped_count_stddev or 0.0), 0.0


def add_localdp_gaussian_noise_to_params(
    model_params: Parameters, sensitivity: float, epsilon: float, delta: float
) -> Parameters:
    """Local DP: the classic Gaussian mechanism, ``σ = Δ sqrt(2 ln(1.25/δ)) / ε``."""
    arrays = parameters_to_ndarrays(model_params)
    add_gaussian_noise_inplace(arrays, sensitivity * np.sqrt(2 * np.log(1.25 / delta)) / epsilon)
    return ndarrays_to_parameters(arrays)
