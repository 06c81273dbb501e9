"""FedAvgM (Hsu et al., 2019): server momentum on the FedAvg pseudo-gradient.

    Δ_t = w_t − mean_t;   v_t = β v_{t−1} + Δ_t (v_0 = Δ_0);   w_{t+1} = w_t − η v_t
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfl.common import NDArrays
from hfl.strategy.fedavg import FedAvg


class FedAvgM(FedAvg):
    """FedAvg with server learning rate ``η`` and server momentum ``β`` (Flower's names)."""

    def __init__(self, *, server_learning_rate: float = 1.0, server_momentum: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_learning_rate = float(server_learning_rate)
        self.server_momentum = float(server_momentum)
        self.momentum_vector: list[np.ndarray] | None = None

    def update(self, server_round: int, mean: list[np.ndarray]) -> list[np.ndarray]:
        if self._current is None:
            raise RuntimeError("FedAvgM.update before configure_fit")
        w = [np.asarray(x, np.float64) for x in self._current]
        grad = [x - m for x, m in zip(w, mean, strict=True)]
        if self.server_momentum > 0.0:
            if self.momentum_vector is None:
                self.momentum_vector = grad
            else:
                self.momentum_vector = [
                    self.server_momentum * v + g for v, g in zip(self.momentum_vector, grad, strict=True)
                ]
            grad = self.momentum_vector
        return [x - self.server_learning_rate * g for x, g in zip(w, grad, strict=True)]

    def state_dict(self) -> dict[str, NDArrays]:
        return {} if self.momentum_vector is None else {"momentum": list(self.momentum_vector)}

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        m = state.get("momentum")
        self.momentum_vector = None if m is None else [np.asarray(a, np.float64) for a in m]
