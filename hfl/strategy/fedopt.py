"""Adaptive server optimisers of Reddi et al., "Adaptive Federated Optimization", ICLR 2021.

Algorithm 2 of the paper, with Δ_t the FedAvg pseudo-gradient (mean_t − x_t):

    m_t = β1 m_{t−1} + (1 − β1) Δ_t
    FedAdagrad: v_t = v_{t−1} + Δ_t²
    FedYogi:    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)
    FedAdam:    v_t = β2 v_{t−1} + (1 − β2) Δ_t²
    x_{t+1} = x_t + η m_t / (√v_t + τ)

with m_{−1} = 0 and v_{−1} = τ² (the paper's v_{−1} ≥ τ²). No bias correction,
as in the paper (Flower's FedAdam adds one; the two differ only in early rounds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfl.common import NDArrays
from hfl.strategy.fedavg import FedAvg


class FedOpt(FedAvg):
    """Base of FedAdagrad/FedYogi/FedAdam: server learning rate η, moments β1, β2, τ."""

    def __init__(self, *, eta: float = 1e-1, eta_l: float = 1e-1, beta_1: float = 0.9,
                 beta_2: float = 0.99, tau: float = 1e-9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0) or tau <= 0 or eta <= 0:
            raise ValueError(f"need 0 <= beta < 1, tau > 0, eta > 0; got {beta_1}, {beta_2}, {tau}, {eta}")
        self.eta, self.eta_l, self.beta_1, self.beta_2, self.tau = eta, eta_l, beta_1, beta_2, tau
        self.m_t: list[np.ndarray] | None = None
        self.v_t: list[np.ndarray] | None = None

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(self, server_round: int, mean: list[np.ndarray]) -> list[np.ndarray]:
        if self._current is None:
            raise RuntimeError(f"{type(self).__name__}.update before configure_fit")
        x = [np.asarray(a, np.float64) for a in self._current]
        delta = [m - a for m, a in zip(mean, x, strict=True)]
        if self.m_t is None or self.v_t is None:
            self.m_t = [np.zeros_like(d) for d in delta]
            self.v_t = [np.full_like(d, self.tau**2) for d in delta]
        self.m_t = [self.beta_1 * m + (1 - self.beta_1) * d for m, d in zip(self.m_t, delta, strict=True)]
        self.v_t = [self.second_moment(v, d * d) for v, d in zip(self.v_t, delta, strict=True)]
        return [a + self.eta * m / (np.sqrt(v) + self.tau) for a, m, v in zip(x, self.m_t, self.v_t, strict=True)]

    def state_dict(self) -> dict[str, NDArrays]:
        if self.m_t is None or self.v_t is None:
            return {}
        return {"m_t": list(self.m_t), "v_t": list(self.v_t)}

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        if "m_t" in state and "v_t" in state:
            self.m_t = [np.asarray(a, np.float64) for a in state["m_t"]]
            self.v_t = [np.asarray(a, np.float64) for a in state["v_t"]]


class FedAdagrad(FedOpt):
    """v_t = v_{t−1} + Δ_t²."""

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return v + d2


class FedYogi(FedOpt):
    """v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)."""

    def __init__(self, *, eta: float = 1e-2, eta_l: float = 0.0316, beta_1: float = 0.9,
                 beta_2: float = 0.99, tau: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau, **kwargs)

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return v - (1 - self.beta_2) * d2 * np.sign(v - d2)


class FedAdam(FedOpt):
    """v_t = β2 v_{t−1} + (1 − β2) Δ_t²."""

    def __init__(self, *, eta: float = 1e-1, eta_l: float = 1e-1, beta_1: float = 0.9,
                 beta_2: float = 0.99, tau: float = 1e-9, **kwargs: Any) -> None:
        super().__init__(eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau, **kwargs)

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return self.beta_2 * v + (1 - self.beta_2) * d2
