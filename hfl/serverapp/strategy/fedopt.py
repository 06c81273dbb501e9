"""Message-API FedOpt (``flwr.serverapp.strategy.FedOpt``): the base of FedAdagrad/FedAdam/FedYogi.

Same update as :mod:`hfl.server.strategy.fedopt`, over named arrays: Δ_t = mean_t − x_t,
m_t = β1 m_{t−1} + (1 − β1) Δ_t, then each subclass's v_t and step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Unpack

import numpy as np

from hfl._kwargs import extends, rule_init
from hfl.common.message import Message
from hfl.common.record import Array, ArrayRecord, ConfigRecord, MetricRecord
from hfl.common.typing import NDArray
from hfl.serverapp.exception import AggregationError
from hfl.serverapp.grid import Grid
from hfl.serverapp.strategy.fedavg import FedAvg, FedAvgOptions

log = logging.getLogger("hfl.serverapp")


class FedOpt(FedAvg):
    """Federated Optim strategy (Reddi et al., 2021).

    A rule is a subclass with its ``_second_moment`` (and ``_eta``, if it scales η) that
    states its own defaults, or fixes arguments, as class keywords, as in
    :class:`hfl.server.strategy.FedOpt`: ``class FedAdam(FedOpt, beta_1=0.9, ...)``.
    """

    @extends(FedAvg.__init__)
    def __init__(self, *, eta: float = 1e-1, eta_l: float = 1e-1, beta_1: float = 0.0,
                 beta_2: float = 0.0, tau: float = 1e-3, **kwargs: Unpack[FedAvgOptions]) -> None:
        super().__init__(**kwargs)
        self.current_arrays: dict[str, NDArray] | None = None
        self.eta = eta
        self.eta_l = eta_l
        self.tau = tau
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.m_t: dict[str, NDArray] | None = None
        self.v_t: dict[str, NDArray] | None = None

    def __init_subclass__(cls, *, fixed: Mapping[str, float] | None = None, **defaults: float) -> None:
        super().__init_subclass__()
        rule_init(cls, FedOpt, _RULE_ARGUMENTS, fixed, defaults)

    def summary(self) -> None:
        log.info("\t├──> %s: eta=%s, eta_l=%s, beta_1=%s, beta_2=%s, tau=%s", type(self).__name__,
                 self.eta, self.eta_l, self.beta_1, self.beta_2, self.tau)
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.current_arrays = {k: array.numpy() for k, array in arrays.items()}
        return super().configure_train(server_round, arrays, config, grid)

    def _compute_deltat_and_mt(self, aggregated_arrayrecord: ArrayRecord,
                               ) -> tuple[dict[str, NDArray], dict[str, NDArray], dict[str, NDArray]]:
        """Δ_t and m_t from the aggregated arrays; AggregationError on a key or shape mismatch."""
        if self.current_arrays is None:
            raise AggregationError(reason="Current arrays not set. Ensure that `configure_train` has "
                                          "been called before aggregation.")
        aggregated_ndarrays = {k: array.numpy() for k, array in aggregated_arrayrecord.items()}
        if set(aggregated_ndarrays.keys()) != set(self.current_arrays.keys()):
            raise AggregationError(
                reason="Keys of the aggregated arrays do not match those of the arrays stored at the "
                       "strategy. `delta_t = aggregated_arrays - current_arrays` cannot be computed.")
        for k, x in aggregated_ndarrays.items():
            if x.shape != self.current_arrays[k].shape:
                raise AggregationError(
                    reason=f"Shape of aggregated array '{k}' does not match shape of the array under "
                           "the same key stored in the strategy. Cannot compute `delta_t`.")
        delta_t = {k: x - self.current_arrays[k] for k, x in aggregated_ndarrays.items()}
        if not self.m_t:
            self.m_t = {k: np.zeros_like(v) for k, v in aggregated_ndarrays.items()}
        self.m_t = {k: self.beta_1 * v + (1 - self.beta_1) * delta_t[k] for k, v in self.m_t.items()}
        return delta_t, self.m_t, aggregated_ndarrays

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        raise NotImplementedError(f"{type(self).__name__} defines no second-moment rule; "
                                  "use FedAdagrad, FedAdam or FedYogi")

    def _eta(self, server_round: int) -> float:
        return self.eta

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregate, then the adaptive server step."""
        aggregated_arrayrecord, aggregated_metrics = super().aggregate_train(server_round, replies)
        if aggregated_arrayrecord is None:
            return aggregated_arrayrecord, aggregated_metrics
        if self.current_arrays is None:
            raise AggregationError(reason="Current arrays not set. Ensure that `configure_train` has "
                                          "been called before aggregation.")
        delta_t, m_t, aggregated_ndarrays = self._compute_deltat_and_mt(aggregated_arrayrecord)
        if not self.v_t:
            self.v_t = {k: np.zeros_like(v) for k, v in aggregated_ndarrays.items()}
        self.v_t = {k: self._second_moment(v, delta_t[k]) for k, v in self.v_t.items()}
        eta = self._eta(server_round)
        new_arrays = {k: x + eta * m_t[k] / (np.sqrt(self.v_t[k]) + self.tau)
                      for k, x in self.current_arrays.items()}
        return ArrayRecord({k: Array(np.asarray(v)) for k, v in new_arrays.items()}), aggregated_metrics


#: The arguments a FedOpt rule may give its own defaults or fix (class keywords).
_RULE_ARGUMENTS = ("eta", "eta_l", "beta_1", "beta_2", "tau")
