"""Client-side DP "mods" under Flower's names: ``fixedclipping_mod``, ``adaptiveclipping_mod``,
``LocalDpMod``.

In Flower these are ClientApp mods (functions of a Message). tessera applies them to a
client's fit result, the only place they act: ``with_mods(client, fixedclipping_mod)``
wraps any ``NumPyClient`` (for ``start_numpy_client``, ``simulate`` or a ``client_fn``),
and ``ClientApp(client_fn=..., mods=[...])`` accepts these three.

- ``fixedclipping_mod``: clips the update ``Δ = θ_fit - θ_received`` to the
  ``clipping_norm`` the server's ``DifferentialPrivacyClientSide*Clipping`` wrapper put
  in the fit config (it is an error to use it without one: the norm comes from there).
- ``adaptiveclipping_mod``: the same, and reports ``norm_bit`` (True when
  ``||Δ|| <= C``: Andrew et al.'s bit; Flower's mod sends the opposite bit) in the fit
  metrics.
- ``LocalDpMod(clipping_norm, sensitivity, epsilon, delta)``: local DP; clips the
  update, then adds Gaussian noise ``σ = sensitivity·sqrt(2 ln(1.25/δ))/ε`` to it before
  it leaves the client, so the server (or anyone) sees only an ``(ε, δ)``-DP update per
  round. Rounds compose: over ``R`` rounds the client spends ``R`` times this budget
  (basic composition), which the client's log states.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hfl.common.differential_privacy import (
    KEY_CLIPPING_NORM,
    KEY_NORM_BIT,
    add_gaussian_noise_inplace,
    compute_adaptive_clip_model_update,
)
from hfl.common.typing import NDArrays

log = logging.getLogger("hfl.dp")

#: a fit mod: (sent parameters, returned parameters, config, metrics) -> (parameters, metrics)
FitMod = Callable[[NDArrays, NDArrays, dict[str, Any], dict[str, Any]], tuple[NDArrays, dict[str, Any]]]


def _norm(config: dict[str, Any], who: str) -> float:
    if KEY_CLIPPING_NORM not in config:
        raise KeyError(
            f"{who}: the fit config has no {KEY_CLIPPING_NORM!r}; the server must wrap its "
            "strategy in DifferentialPrivacyClientSideFixedClipping / ...AdaptiveClipping"
        )
    return float(config[KEY_CLIPPING_NORM])


def _clipped(sent: NDArrays, got: NDArrays, norm: float) -> tuple[NDArrays, bool]:
    """``sent + clip(got - sent)`` in ``got``'s dtypes, and whether the update was clipped."""
    out = [np.array(a, dtype=np.float64) for a in got]
    clipped = compute_adaptive_clip_model_update(out, [np.asarray(a, np.float64) for a in sent],
                                                 norm)
    return [o.astype(np.asarray(g).dtype) for o, g in zip(out, got, strict=True)], clipped


def fixedclipping_mod(sent: NDArrays, got: NDArrays, config: dict[str, Any],
                      metrics: dict[str, Any]) -> tuple[NDArrays, dict[str, Any]]:
    """Clip the update to the server's ``clipping_norm``."""
    return _clipped(sent, got, _norm(config, "fixedclipping_mod"))[0], metrics


def adaptiveclipping_mod(sent: NDArrays, got: NDArrays, config: dict[str, Any],
                         metrics: dict[str, Any]) -> tuple[NDArrays, dict[str, Any]]:
    """Clip the update and report ``norm_bit`` (True: its norm was at most the bound)."""
    out, clipped = _clipped(sent, got, _norm(config, "adaptiveclipping_mod"))
    return out, {**metrics, KEY_NORM_BIT: not clipped}


class LocalDpMod:
    """Local DP on the client's update: clip to ``clipping_norm``, add Gaussian noise."""

    def __init__(self, clipping_norm: float, sensitivity: float, epsilon: float,
                 delta: float) -> None:
        if clipping_norm <= 0:
            raise ValueError("The clipping norm should be a positive value.")
        if sensitivity < 0:
            raise ValueError("The sensitivity should be a non-negative value.")
        if epsilon < 0:
            raise ValueError("Epsilon should be a non-negative value.")
        if delta < 0:
            raise ValueError("Delta should be a non-negative value.")
        self.clipping_norm = clipping_norm
        self.sensitivity = sensitivity
        self.epsilon = epsilon
        self.delta = delta
        self.rounds = 0

    @property
    def stddev(self) -> float:
        return self.sensitivity * math.sqrt(2 * math.log(1.25 / self.delta)) / self.epsilon

    def __call__(self, sent: NDArrays, got: NDArrays, config: dict[str, Any],
                 metrics: dict[str, Any]) -> tuple[NDArrays, dict[str, Any]]:
        out = [np.array(a, dtype=np.float64) for a in got]
        compute_adaptive_clip_model_update(out, [np.asarray(a, np.float64) for a in sent],
                                           self.clipping_norm)
        add_gaussian_noise_inplace(out, self.stddev)  # sent + clipped update + noise
        self.rounds += 1
        log.info("LocalDpMod: update clipped to %g, noise stddev %.4g added: (%g, %g)-DP this "
                 "round, (%g, %g) over %d rounds by basic composition", self.clipping_norm,
                 self.stddev, self.epsilon, self.delta, self.rounds * self.epsilon,
                 self.rounds * self.delta, self.rounds)
        res = [o.astype(np.asarray(g).dtype) for o, g in zip(out, got, strict=True)]
        return res, metrics


def apply_fit_mods(mods: Sequence[FitMod], sent: NDArrays, got: NDArrays,
                   config: dict[str, Any], metrics: dict[str, Any]) -> tuple[NDArrays, dict[str, Any]]:
    """Run the mods in order on one fit result."""
    for m in mods:
        check_mod(m)
        got, metrics = m(sent, got, config, metrics)
    return got, metrics


def check_mod(m: Any) -> None:
    """NotImplementedError unless ``m`` is one of the mods tessera runs."""
    if not (m in (fixedclipping_mod, adaptiveclipping_mod) or isinstance(m, LocalDpMod)):
        raise NotImplementedError(
            f"mod {getattr(m, '__name__', m)!r}: tessera runs only its DP mods "
            "(fixedclipping_mod, adaptiveclipping_mod, LocalDpMod)")


def with_mods(client: Any, *mods: FitMod) -> Any:
    """``client`` (a NumPyClient) whose ``fit`` results pass through ``mods``."""
    from hfl.client.numpy_client import NumPyClient

    for m in mods:
        check_mod(m)  # refuse an unknown mod now, not at the first fit

    class _Modded(NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> NDArrays:
            return client.get_parameters(config)

        def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
            return client.get_properties(config)

        def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[NDArrays, int, dict[str, Any]]:
            got, n, metrics = client.fit(parameters, config)
            got, metrics = apply_fit_mods(mods, list(parameters), list(got), dict(config),
                                          dict(metrics))
            return got, n, metrics

        def evaluate(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
            return client.evaluate(parameters, config)

    return _Modded()
