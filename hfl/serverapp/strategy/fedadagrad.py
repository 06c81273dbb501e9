"""Message-API FedAdagrad (``flwr.serverapp.strategy.FedAdagrad``): v_t = v_{t−1} + Δ_t² (β1 = β2 = 0)."""

from __future__ import annotations

from hfl.common.typing import NDArray
from hfl.serverapp.strategy.fedopt import FedOpt


class FedAdagrad(FedOpt, fixed={"beta_1": 0.0, "beta_2": 0.0}):
    """v_t = v_{t−1} + Δ_t² (β1 = β2 = 0)."""

    def _second_moment(self, v: NDArray, d: NDArray) -> NDArray:
        return v + d**2  # type: ignore[no-any-return]
