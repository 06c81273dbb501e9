"""Message-API FedAdam (``flwr.serverapp.strategy.FedAdam``): v_t = β2 v_{t−1} + (1 − β2) Δ_t², bias-corrected step."""

from __future__ import annotations

import numpy as np

from hfl.common.typing import NDArray
from hfl.serverapp.strategy.fedopt import FedOpt


class FedAdam(FedOpt, eta=1e-1, eta_l=1e-1, beta_1=0.9, beta_2=0.99, tau=1e-3):
    """v_t = β2 v_{t−1} + (1 − β2) Δ_t², bias-corrected step."""

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        return self.beta_2 * v + (1 - self.beta_2) * d**2  # type: ignore[no-any-return]

    def _eta(self, server_round: int) -> float:
        # a NumPy float64, as in Flower: with float32 models the step is then taken in float64
        eta_norm: float = (self.eta * np.sqrt(1 - np.power(self.beta_2, server_round + 1.0))
                           / (1 - np.power(self.beta_1, server_round + 1.0)))
        return eta_norm
