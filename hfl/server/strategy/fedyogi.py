"""FedYogi (Reddi et al. 2021): Flower's ``flwr.server.strategy.FedYogi``, same defaults and numbers."""

from __future__ import annotations

import numpy as np

from hfl.common.typing import NDArrays
from hfl.server.strategy.fedopt import FedOpt


class FedYogi(FedOpt, eta=1e-2, eta_l=0.0316, beta_1=0.9, beta_2=0.99, tau=1e-3):
    """v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        return [x - (1.0 - self.beta_2) * np.multiply(y, y) * np.sign(x - np.multiply(y, y)) for x, y in zip(v, delta_t, strict=True)]
