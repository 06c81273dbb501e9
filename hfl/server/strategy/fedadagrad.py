"""FedAdagrad (Duchi et al. 2011 via Reddi et al. 2021): Flower's ``flwr.server.strategy.FedAdagrad``, same defaults and numbers."""

from __future__ import annotations

import numpy as np

from hfl.common.typing import NDArrays
from hfl.server.strategy.fedopt import FedOpt


class FedAdagrad(FedOpt, fixed={"beta_1": 0.0, "beta_2": 0.0}):
    """v_t = v_{t−1} + Δ_t²; β1 = β2 = 0 (no momentum), v_0 = 0."""

    def second_moment(self, v: NDArrays, delta_t: NDArrays) -> NDArrays:
        return [x + np.multiply(y, y) for x, y in zip(v, delta_t, strict=True)]
