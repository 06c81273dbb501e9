"""Adaptive server optimisers of Reddi et al., "Adaptive Federated Optimization" (ICLR 2021).

Flower's ``FedOpt`` family, number for number. With Δ_t = mean_t − x_t (the FedAvg
pseudo-gradient), m_0 = v_0 = 0:

    m_t = β1 m_{t−1} + (1 − β1) Δ_t
    FedAdagrad: v_t = v_{t−1} + Δ_t²                       (β1 = β2 = 0)
    FedYogi:    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)
    FedAdam:    v_t = β2 v_{t−1} + (1 − β2) Δ_t², and η scaled by
                √(1 − β2^{t+1}) / (1 − β1^{t+1})           (Flower's bias correction)
    x_{t+1} = x_t + η m_t / (√v_t + τ)

``initial_parameters`` is optional here (Flower requires it): without it tessera's
server hands the strategy the model it got from a client before round 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Unpack

import numpy as np

from hfl._kwargs import extends, rule_init
from hfl.common.parameter import parameters_to_ndarrays
from hfl.common.typing import NDArrays
from hfl.server.strategy.fedavg import FedAvg, FedAvgOptions


class FedOpt(FedAvg):
    """Federated Optim strategy: the base of FedAdagrad, FedAdam and FedYogi.

    A rule is a subclass with its :meth:`second_moment` (and :meth:`step_size`, if it
    scales η) that states its own defaults, or fixes arguments it does not take, as class
    keywords: ``class FedYogi(FedOpt, eta=1e-2, ..., tau=1e-3)``,
    ``class FedAdagrad(FedOpt, fixed={"beta_1": 0.0, "beta_2": 0.0})``. Its constructor
    then shows Flower's signature for it, defaults included (``inspect.signature``).
    """

    @extends(FedAvg.__init__, without=("inplace",))
    def __init__(self, *, eta: float = 1e-1, eta_l: float = 1e-1, beta_1: float = 0.0, beta_2: float = 0.0,
                 tau: float = 1e-9, **kwargs: Unpack[FedAvgOptions]) -> None:
        super().__init__(**kwargs)
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0) or tau <= 0 or eta <= 0:
            raise ValueError(f"need 0 <= beta_1, beta_2 < 1, tau > 0, eta > 0; got "
                             f"beta_1={beta_1}, beta_2={beta_2}, tau={tau}, eta={eta}")
        self.current_weights: NDArrays | None = (
            None if self.initial_parameters is None else parameters_to_ndarrays(self.initial_parameters))
        self.eta = eta
        self.eta_l = eta_l
        self.tau = tau
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.m_t: NDArrays | None = None
        self.v_t: NDArrays | None = None

    def __init_subclass__(cls, *, fixed: Mapping[str, float] | None = None, **defaults: float) -> None:
        super().__init_subclass__()
        rule_init(cls, FedOpt, _RULE_ARGUMENTS, fixed, defaults)

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        """v_t from v_{t−1} and Δ_t (each subclass's rule)."""
        raise NotImplementedError(f"{type(self).__name__} defines no second-moment rule; "
                                  "use FedAdagrad, FedAdam or FedYogi")

    def step_size(self, server_round: int) -> float:
        return self.eta

    def server_update(self, server_round: int, fedavg_result: NDArrays) -> NDArrays:
        """The adaptive step from the weighted mean."""
        if self.current_weights is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the current model: pass "
                "initial_parameters=ndarrays_to_parameters(...)")
        delta_t: NDArrays = [x - y for x, y in zip(fedavg_result, self.current_weights, strict=True)]
        if not self.m_t:
            self.m_t = [np.zeros_like(x) for x in delta_t]
        self.m_t = [np.multiply(self.beta_1, x) + (1 - self.beta_1) * y
                    for x, y in zip(self.m_t, delta_t, strict=True)]
        if not self.v_t:
            self.v_t = [np.zeros_like(x) for x in delta_t]
        self.v_t = self.second_moment(self.v_t, delta_t)
        eta = self.step_size(server_round)
        new_weights = [x + eta * y / (np.sqrt(z) + self.tau)
                       for x, y, z in zip(self.current_weights, self.m_t, self.v_t, strict=True)]
        self.current_weights = new_weights
        return new_weights

    def _hfl_attach(self, parameters: NDArrays) -> None:
        if self.current_weights is None:
            self.current_weights = [np.asarray(a) for a in parameters]

    def state_dict(self) -> dict[str, NDArrays]:
        out: dict[str, NDArrays] = {}
        if self.m_t is not None and self.v_t is not None:
            out["m_t"], out["v_t"] = list(self.m_t), list(self.v_t)
        if self.current_weights is not None:
            out["current_weights"] = list(self.current_weights)
        return out

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        if "m_t" in state and "v_t" in state:
            self.m_t = [np.asarray(a) for a in state["m_t"]]
            self.v_t = [np.asarray(a) for a in state["v_t"]]
        if "current_weights" in state:
            self.current_weights = [np.asarray(a) for a in state["current_weights"]]


#: The arguments a FedOpt rule may give its own defaults or fix (class keywords).
_RULE_ARGUMENTS = ("eta", "eta_l", "beta_1", "beta_2", "tau")
