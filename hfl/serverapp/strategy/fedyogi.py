"""Message-API FedYogi (``flwr.serverapp.strategy.FedYogi``): v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

from __future__ import annotations

import numpy as np

from hfl.common.typing import NDArray
from hfl.serverapp.strategy.fedopt import FedOpt


class FedYogi(FedOpt, eta=1e-2, eta_l=0.0316, beta_1=0.9, beta_2=0.99, tau=1e-3):
    """v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        return v - (1.0 - self.beta_2) * d**2 * np.sign(v - d**2)  # type: ignore[no-any-return]
