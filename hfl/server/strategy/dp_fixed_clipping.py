"""Central DP with fixed clipping: Flower's two strategy wrappers, with ε accounting.

``DifferentialPrivacyServerSideFixedClipping(strategy, noise_multiplier, clipping_norm,
num_sampled_clients)`` and ``DifferentialPrivacyClientSideFixedClipping(...)`` take
Flower's arguments in Flower's order and do what Flower's do (McMahan et al. 2018,
arXiv 1710.06963): each client's update ``Δ = θ_client - θ_global`` is clipped to L2
norm ``C`` (by the server, or by the client with ``fixedclipping_mod``), the wrapped
strategy aggregates, and ``N(0, (z·C/m)²)`` is added to every coordinate of the new
model, ``m = num_sampled_clients``.

What tessera adds (keyword-only, so Flower code runs unchanged):

- **Accounting.** After every round the wrapper composes one sampled-Gaussian step
  (``dp.accounting``, Google's ``dp-accounting``, RDP) with sampling rate
  ``q = m / available clients`` and reports ``dp_epsilon`` (total), ``dp_epsilon_round``
  and ``dp_delta`` in the round's fit metrics, so they reach ``History``
  (``metrics_distributed_fit``), the server log and ``History.plot_png``.
  ``delta`` defaults to 1e-5.
- **target_epsilon.** ``noise_multiplier=None, target_epsilon=ε, num_rounds=R`` picks the
  smallest multiplier whose ε after ``R`` rounds is at most ``ε`` (at the sampling rate
  of round 1, or ``num_total_clients`` if given).
- **Secure aggregation.** Server-side clipping needs each client's update, which
  secure aggregation hides: the server-side wrapper refuses ``secure_agg=True`` with an
  error naming the client-side wrapper. The client-side wrapper runs with it: the
  clients clip, SecAgg sums, and the noise is added to the mean.

Semantics stated honestly: the guarantee is user-level (one client's whole update),
and it assumes the mean weights clients equally. With FedAvg's example weighting the
sensitivity of the mean is ``C·max_w/Σw``, not ``C/m``; Flower makes the same
assumption. The Poisson event approximates Flower's fixed-size sampling.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from hfl import common
from hfl.common.differential_privacy import (
    CLIENTS_DISCREPANCY_WARNING,
    KEY_CLIPPING_NORM,
    add_gaussian_noise_to_params,
    compute_clip_model_update,
    compute_stdv,
)
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.server.strategy.strategy import Strategy
from party.errors import ConfigError

if TYPE_CHECKING:
    from hfl.server.client_manager import ClientManager
    from hfl.server.client_proxy import ClientProxy

log = logging.getLogger("hfl.dp")


class _CentralDP(Strategy):
    """Delegation to the wrapped strategy, noise on the aggregate, and the accountant."""

    _client_side = False

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float | None,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        delta: float = 1e-5,
        target_epsilon: float | None = None,
        num_rounds: int | None = None,
        num_total_clients: int | None = None,
    ) -> None:
        super().__init__()
        if strategy is None:
            raise ValueError("The passed strategy is None.")
        if noise_multiplier is None:
            if target_epsilon is None or num_rounds is None:
                raise ValueError(
                    "noise_multiplier=None needs target_epsilon= and num_rounds= to pick it"
                )
        elif noise_multiplier < 0:
            raise ValueError("The noise multiplier should be a non-negative value.")
        if target_epsilon is not None and noise_multiplier is not None:
            raise ValueError("give noise_multiplier or target_epsilon, not both")
        if clipping_norm <= 0:
            raise ValueError("The clipping norm should be a positive value.")
        if num_sampled_clients <= 0:
            raise ValueError("The number of sampled clients should be a positive value.")
        from dp.accounting import CentralAccountant

        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = float(clipping_norm)
        self.num_sampled_clients = int(num_sampled_clients)
        self.delta = float(delta)
        self.target_epsilon = target_epsilon
        self.num_rounds = num_rounds
        self.num_total_clients = num_total_clients
        self.accountant = CentralAccountant(self.delta)
        self.current_round_params: common.NDArrays = []
        self._q = 1.0
        self._rng = np.random.default_rng()

    # -- delegation ---------------------------------------------------------------------
    def initialize_parameters(self, client_manager: ClientManager) -> common.Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_evaluate(
        self, server_round: int, parameters: common.Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, common.EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, common.EvaluateRes]],
        failures: list[tuple[ClientProxy, common.EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, common.Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(
        self, server_round: int, parameters: common.Parameters
    ) -> tuple[float, dict[str, common.Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)

    def __getattr__(self, name: str) -> Any:
        # Flower-style attributes of the wrapped strategy (fraction_fit, ...) stay readable
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    # -- the DP round -------------------------------------------------------------------
    def configure_fit(
        self, server_round: int, parameters: common.Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, common.FitIns]]:
        self.current_round_params = parameters_to_ndarrays(parameters)
        available = self.num_total_clients or client_manager.num_available()
        self._q = min(1.0, self.num_sampled_clients / max(1, available))
        if self.noise_multiplier is None:
            from dp.accounting import central_noise_for

            assert self.target_epsilon is not None and self.num_rounds is not None
            self.noise_multiplier = central_noise_for(
                self.target_epsilon, self.delta, self.num_rounds, self._q
            )
            log.info(
                "DP: noise multiplier %.4f gives epsilon <= %g at delta %g after %d rounds "
                "(sampling rate %.3f)", self.noise_multiplier, self.target_epsilon,
                self.delta, self.num_rounds, self._q,
            )
        ins = self.strategy.configure_fit(server_round, parameters, client_manager)
        if self._client_side:
            for _, fit_ins in ins:
                fit_ins.config[KEY_CLIPPING_NORM] = self.clipping_norm
        return ins

    def _round_clip(self) -> float:
        """The clipping norm this round's noise is calibrated to."""
        return self.clipping_norm

    def _clip_results(self, results: list[tuple[ClientProxy, common.FitRes]]) -> None:
        for _, res in results:
            param = parameters_to_ndarrays(res.parameters)
            compute_clip_model_update(param, self.current_round_params, self.clipping_norm)
            res.parameters = ndarrays_to_parameters(param)

    def _noise(self, params: common.Parameters | None, clip: float) -> common.Parameters | None:
        if params is None:
            return None
        assert self.noise_multiplier is not None
        log.info("aggregate_fit: central DP noise with %.4f stdev added",
                 compute_stdv(self.noise_multiplier, clip, self.num_sampled_clients))
        return add_gaussian_noise_to_params(params, self.noise_multiplier, clip,
                                            self.num_sampled_clients)

    def _account(self, server_round: int,
                 metrics: dict[str, common.Scalar]) -> dict[str, common.Scalar]:
        assert self.noise_multiplier is not None
        inc, total = self.accountant.step(self._noise_multiplier_for_accounting(), self._q)
        log.info("round %d: DP epsilon %.4f this round, %.4f in total (delta %g)",
                 server_round, inc, total, self.delta)
        return {**metrics, "dp_epsilon": total, "dp_epsilon_round": inc,
                "dp_delta": self.delta, "dp_noise_multiplier": float(self.noise_multiplier)}

    def _noise_multiplier_for_accounting(self) -> float:
        assert self.noise_multiplier is not None
        return self.noise_multiplier

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, common.FitRes]],
        failures: list[tuple[ClientProxy, common.FitRes] | BaseException],
    ) -> tuple[common.Parameters | None, dict[str, common.Scalar]]:
        if failures:
            return None, {}
        if len(results) != self.num_sampled_clients:
            log.warning(CLIENTS_DISCREPANCY_WARNING, len(results), self.num_sampled_clients)
        clip = self._round_clip()
        if not self._client_side:
            self._clip_results(results)
        params, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        self._after_clip(results)
        return self._noise(params, clip), self._account(server_round, dict(metrics))

    def _after_clip(self, results: list[tuple[ClientProxy, common.FitRes]]) -> None:
        """Adaptive clipping updates its norm here."""

    # -- secure aggregation -------------------------------------------------------------
    @property
    def supports_secure_aggregation(self) -> bool:
        return self._client_side and bool(self.strategy.supports_secure_aggregation)

    def aggregate_mean(
        self, server_round: int, mean: common.NDArrays, num_examples: int,
        metrics: list[tuple[int, common.Metrics]],
    ) -> tuple[common.Parameters | None, dict[str, common.Scalar]]:
        if not self._client_side:
            raise ConfigError(
                f"{type(self).__name__} clips each client's update on the server, which "
                "secure aggregation hides; with secure_agg=True use the client-side wrapper "
                "(DifferentialPrivacyClientSideFixedClipping / ...AdaptiveClipping with "
                "fixedclipping_mod / adaptiveclipping_mod) or distributed DP"
            )
        clip = self._round_clip()
        params, out = self.strategy.aggregate_mean(server_round, mean, num_examples, metrics)
        self._after_mean(metrics)
        return self._noise(params, clip), self._account(server_round, dict(out))

    def _after_mean(self, metrics: list[tuple[int, common.Metrics]]) -> None:
        """Client-side adaptive clipping reads the norm bits here."""

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, common.NDArrays]:
        state = dict(self.strategy.state_dict())
        state["dp/accountant"] = [np.asarray(self.accountant.steps, dtype=np.float64).reshape(-1, 2)]
        state["dp/clip"] = [np.asarray([self.clipping_norm,
                                        math.nan if self.noise_multiplier is None
                                        else self.noise_multiplier])]
        return state

    def load_state_dict(self, state: dict[str, common.NDArrays]) -> None:
        inner = {k: v for k, v in state.items() if not k.startswith("dp/")}
        self.strategy.load_state_dict(inner)
        if "dp/accountant" in state:
            self.accountant.restore(np.asarray(state["dp/accountant"][0]).tolist())
        if "dp/clip" in state:
            clip, z = (float(v) for v in np.asarray(state["dp/clip"][0]))
            self.clipping_norm = clip
            if not math.isnan(z):
                self.noise_multiplier = z


class DifferentialPrivacyServerSideFixedClipping(_CentralDP):
    """Central DP, the server clips each update to ``clipping_norm`` (Flower's wrapper)."""

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Fixed Clipping)"


class DifferentialPrivacyClientSideFixedClipping(_CentralDP):
    """Central DP, the clients clip (``fixedclipping_mod``); runs with secure aggregation."""

    _client_side = True

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Fixed Clipping)"
