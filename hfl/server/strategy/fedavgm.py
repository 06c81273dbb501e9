"""FedAvgM (Hsu et al., 2019): server momentum on the FedAvg pseudo-gradient (Flower's).

    Δ_t = w_t − mean_t;   v_t = β v_{t−1} + Δ_t (v_1 = Δ_1);   w_{t+1} = w_t − η v_t

``w_t`` is ``initial_parameters`` in round 1 and the previous result after that,
exactly as Flower's ``FedAvgM`` (which keeps it in ``self.initial_parameters``).
Without ``initial_parameters`` tessera's server hands the strategy the model it
got from a client before round 1 (Flower would fail its assertion there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

import numpy as np

from hfl._kwargs import extends
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import FitRes, NDArrays, Parameters
from hfl.server.strategy.aggregate import aggregate
from hfl.server.strategy.fedavg import FedAvg, FedAvgOptions

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy


class FedAvgM(FedAvg):
    """Federated Averaging with server momentum (Flower's arguments and defaults)."""

    @extends(FedAvg.__init__, without=("inplace",))
    def __init__(self, *, server_learning_rate: float = 1.0, server_momentum: float = 0.0,
                 **kwargs: Unpack[FedAvgOptions]) -> None:
        super().__init__(**kwargs)
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.server_opt: bool = (self.server_momentum != 0.0) or (self.server_learning_rate != 1.0)
        self.momentum_vector: NDArrays | None = None

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Initialize global model parameters (kept: they are w_1 of the update)."""
        return self.initial_parameters

    def weighted_mean(self, results: list[tuple[ClientProxy, FitRes]]) -> NDArrays:
        """Flower's FedAvgM averages with ``aggregate`` (not in place): the same numbers."""
        return aggregate([(parameters_to_ndarrays(r.parameters), r.num_examples) for _, r in results])

    def server_update(self, server_round: int, fedavg_result: NDArrays) -> NDArrays:
        """The momentum step from the weighted mean (none unless server_opt)."""
        if not self.server_opt:
            return fedavg_result
        if self.initial_parameters is None:
            raise RuntimeError(
                "FedAvgM with server_learning_rate != 1 or server_momentum != 0 needs the "
                "current model: pass initial_parameters=ndarrays_to_parameters(...)")
        initial_weights = parameters_to_ndarrays(self.initial_parameters)
        pseudo_gradient: NDArrays = [x - y for x, y in zip(initial_weights, fedavg_result, strict=True)]
        if self.server_momentum > 0.0:
            if server_round > 1 and self.momentum_vector:
                self.momentum_vector = [self.server_momentum * x + y
                                        for x, y in zip(self.momentum_vector, pseudo_gradient, strict=True)]
            else:
                self.momentum_vector = pseudo_gradient
            pseudo_gradient = self.momentum_vector
        fedavg_result = [x - self.server_learning_rate * y
                         for x, y in zip(initial_weights, pseudo_gradient, strict=True)]
        self.initial_parameters = ndarrays_to_parameters(fedavg_result)
        return fedavg_result

    def _hfl_attach(self, parameters: NDArrays) -> None:
        if self.initial_parameters is None:
            self.initial_parameters = ndarrays_to_parameters(parameters)

    def state_dict(self) -> dict[str, NDArrays]:
        out: dict[str, NDArrays] = {}
        if self.momentum_vector is not None:
            out["momentum"] = list(self.momentum_vector)
        if self.server_opt and self.initial_parameters is not None:
            out["current"] = parameters_to_ndarrays(self.initial_parameters)
        return out

    def load_state_dict(self, state: dict[str, NDArrays]) -> None:
        m = state.get("momentum")
        self.momentum_vector = None if m is None else [np.asarray(a) for a in m]
        if "current" in state:
            self.initial_parameters = ndarrays_to_parameters(state["current"])

