"""FedAdam (Reddi et al. 2021): Flower's ``flwr.server.strategy.FedAdam``, same defaults and numbers."""

from __future__ import annotations

import numpy as np

from hfl.common.typing import NDArrays
from hfl.server.strategy.fedopt import FedOpt


class FedAdam(FedOpt, eta=1e-1, eta_l=1e-1, beta_1=0.9, beta_2=0.99, tau=1e-9):
    """v_t = β2 v_{t−1} + (1 − β2) Δ_t², with Flower's bias-corrected step size."""

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        return [self.beta_2 * x + (1 - self.beta_2) * np.multiply(y, y) for x, y in zip(v, delta_t, strict=True)]

    def step_size(self, server_round: int) -> float:
        # a NumPy float64, as in Flower: with float32 models the step is then taken in float64
        eta_norm: float = (self.eta * np.sqrt(1 - np.power(self.beta_2, server_round + 1.0))
                           / (1 - np.power(self.beta_1, server_round + 1.0)))
        return eta_norm
