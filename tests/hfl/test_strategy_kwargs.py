"""The strategies forward every constructor argument to their parent (hfl._kwargs.parent_kwargs)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import hfl.server.strategy as legacy
import hfl.serverapp.strategy as msg_api
from hfl._kwargs import parent_kwargs
from hfl.common.parameter import ndarrays_to_parameters

SUBCLASSES = ["FedOpt", "FedAvgM", "FedProx", "FedAdam", "FedYogi", "FedAdagrad"]


def _metrics(_: object) -> dict[str, float]:
    return {}


@pytest.mark.parametrize("name", SUBCLASSES)
def test_legacy_subclass_forwards_every_fedavg_argument(name: str) -> None:
    init = ndarrays_to_parameters([np.ones(2)])
    extra = {"proximal_mu": 0.5} if name == "FedProx" else {}
    s = getattr(legacy, name)(fraction_fit=0.5, fraction_evaluate=0.25, min_fit_clients=3,
                              min_evaluate_clients=4, min_available_clients=5, accept_failures=False,
                              initial_parameters=init, fit_metrics_aggregation_fn=_metrics,
                              evaluate_metrics_aggregation_fn=_metrics, **extra)
    assert (s.fraction_fit, s.fraction_evaluate, s.min_fit_clients, s.min_evaluate_clients,
            s.min_available_clients, s.accept_failures) == (0.5, 0.25, 3, 4, 5, False)
    assert s.initial_parameters is init
    assert s.fit_metrics_aggregation_fn is _metrics and s.evaluate_metrics_aggregation_fn is _metrics
    assert s.inplace is True  # FedAvg's default: the subclasses do not take it


@pytest.mark.parametrize("mod", [legacy, msg_api])
def test_fedopt_family_passes_its_own_arguments(mod: object) -> None:
    a = mod.FedAdam(eta=0.3, eta_l=0.2, beta_1=0.5, beta_2=0.6, tau=0.01)  # type: ignore[attr-defined]
    assert (a.eta, a.eta_l, a.beta_1, a.beta_2, a.tau) == (0.3, 0.2, 0.5, 0.6, 0.01)
    g = mod.FedAdagrad(eta=0.3, tau=0.01)  # type: ignore[attr-defined]
    assert (g.eta, g.beta_1, g.beta_2, g.tau) == (0.3, 0.0, 0.0, 0.01)


@pytest.mark.parametrize("name", SUBCLASSES)
def test_message_api_subclass_forwards_every_fedavg_argument(name: str) -> None:
    extra = {"proximal_mu": 0.5} if name == "FedProx" else {}
    s = getattr(msg_api, name)(fraction_train=0.5, fraction_evaluate=0.25, min_train_nodes=3,
                               min_evaluate_nodes=4, min_available_nodes=5, weighted_by_key="w",
                               arrayrecord_key="a", configrecord_key="c",
                               train_metrics_aggr_fn=_metrics, evaluate_metrics_aggr_fn=_metrics, **extra)
    assert (s.fraction_train, s.fraction_evaluate, s.min_train_nodes, s.min_evaluate_nodes,
            s.min_available_nodes, s.weighted_by_key, s.arrayrecord_key, s.configrecord_key) == (
        0.5, 0.25, 3, 4, 5, "w", "a", "c")
    assert s.train_metrics_aggr_fn is _metrics and s.evaluate_metrics_aggr_fn is _metrics


@pytest.mark.parametrize("mod", [legacy, msg_api])
@pytest.mark.parametrize("name", SUBCLASSES)
def test_signatures_stay_explicit_keywords(mod: object, name: str) -> None:
    params = inspect.signature(getattr(mod, name).__init__).parameters.values()
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)


def test_parent_kwargs_takes_fixed_values_and_leaves_the_rest_to_defaults() -> None:
    def parent(self: object, a: int, b: int = 2, c: int = 3) -> None: ...
    assert parent_kwargs(parent, {"self": 0, "a": 1, "z": 9}, c=7) == {"a": 1, "c": 7}
