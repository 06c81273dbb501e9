"""Central DP with adaptive clipping (Andrew et al. 2021, arXiv 1905.03871): Flower's wrappers.

Each round the clipping norm ``C`` moves towards the ``target_clipped_quantile`` of the
clients' update norms: with ``b̃`` the noised fraction of updates whose norm was at most
``C``, ``C ← C·exp(-η (b̃ - γ))``. The count is noised with std ``σ_b``
(``clipped_count_stddev``, default ``m/20``) and the update noise multiplier is lowered
to ``z_Δ = (z⁻² - (2σ_b)⁻²)^(-1/2)``, so that the pair costs what the Gaussian mechanism
with multiplier ``z`` costs: the accountant composes ``z`` per round.

One deliberate difference from Flower 1.42: Flower adds the round's noise *after*
updating ``C``, so it is calibrated to the next round's norm rather than to the norm
the updates were clipped to; here the noise uses the norm that clipped this round's
updates (otherwise a shrinking ``C`` under-noises the round). The expected accuracy is
the same; the privacy claim is only correct this way.

Client-side (``adaptiveclipping_mod``): each client reports its norm bit in its fit
metrics (``norm_bit``). Under secure aggregation the metrics still travel in the clear,
so the server sees each client's bit (one bit per client per round, about its update's
norm); Andrew et al. sum the bits inside the secure sum. Use the fixed-clipping
wrapper where that bit matters.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hfl.common.differential_privacy import (
    KEY_NORM_BIT,
    compute_adaptive_clip_model_update,
    compute_adaptive_noise_params,
)
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.common.typing import FitRes, Metrics
from hfl.server.strategy.dp_fixed_clipping import _CentralDP
from hfl.server.strategy.strategy import Strategy

if TYPE_CHECKING:
    from hfl.server.client_proxy import ClientProxy


class _Adaptive(_CentralDP):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        delta: float = 1e-5,
    ) -> None:
        if initial_clipping_norm <= 0:
            raise ValueError("The initial clipping norm should be a positive value.")
        if not 0 <= target_clipped_quantile <= 1:
            raise ValueError("The target clipped quantile must be between 0 and 1 (inclusive).")
        if clip_norm_lr <= 0:
            raise ValueError("The learning rate must be positive.")
        if clipped_count_stddev is not None and clipped_count_stddev < 0:
            raise ValueError("The `clipped_count_stddev` must be non-negative.")
        super().__init__(strategy, noise_multiplier, initial_clipping_norm, num_sampled_clients,
                         delta=delta)
        self.target_clipped_quantile = target_clipped_quantile
        self.clip_norm_lr = clip_norm_lr
        self.clipped_count_stddev, self.update_noise_multiplier = compute_adaptive_noise_params(
            noise_multiplier, num_sampled_clients, clipped_count_stddev)
        self._user_noise_multiplier = noise_multiplier
        self._bits: list[bool] = []

    def _noise_multiplier_for_accounting(self) -> float:
        return self._user_noise_multiplier

    def _noise(self, params, clip):  # type: ignore[no-untyped-def]
        # the update gets z_Δ; the count took the rest of the budget
        z, self.noise_multiplier = self.noise_multiplier, self.update_noise_multiplier
        try:
            return super()._noise(params, clip)
        finally:
            self.noise_multiplier = z

    def _adapt(self, bits: list[bool]) -> None:
        if not bits:
            return
        count = float(sum(bits))
        noised = float(self._rng.normal(count, self.clipped_count_stddev)) if \
            self.clipped_count_stddev > 0 else count
        frac = noised / len(bits)
        self.clipping_norm *= math.exp(-self.clip_norm_lr * (frac - self.target_clipped_quantile))


class DifferentialPrivacyServerSideAdaptiveClipping(_Adaptive):
    """Adaptive clipping done by the server on each update (Flower's wrapper)."""

    def _clip_results(self, results: list[tuple[ClientProxy, FitRes]]) -> None:
        self._bits = []
        for _, res in results:
            param = parameters_to_ndarrays(res.parameters)
            clipped = compute_adaptive_clip_model_update(
                param, self.current_round_params, self.clipping_norm)
            # the norm bit is "norm <= C", Andrew et al.'s b_i
            self._bits.append(not clipped)
            res.parameters = ndarrays_to_parameters(param)

    def _after_clip(self, results: list[tuple[ClientProxy, FitRes]]) -> None:
        self._adapt(self._bits)

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Adaptive Clipping)"


class DifferentialPrivacyClientSideAdaptiveClipping(_Adaptive):
    """Adaptive clipping done by the clients (``adaptiveclipping_mod``), bits in metrics."""

    _client_side = True

    def _after_clip(self, results: list[tuple[ClientProxy, FitRes]]) -> None:
        bits = []
        for _, res in results:
            if KEY_NORM_BIT not in res.metrics:
                raise KeyError(f"{KEY_NORM_BIT} not returned by a client (use adaptiveclipping_mod)")
            bits.append(bool(res.metrics[KEY_NORM_BIT]))
        self._adapt(bits)

    def _after_mean(self, metrics: list[tuple[int, Metrics]]) -> None:
        bits = []
        for _, m in metrics:
            if KEY_NORM_BIT not in m:
                raise KeyError(f"{KEY_NORM_BIT} not returned by a client (use adaptiveclipping_mod)")
            bits.append(bool(m[KEY_NORM_BIT]))
        self._adapt(bits)

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Adaptive Clipping)"


__all__ = [
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
]
