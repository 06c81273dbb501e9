"""Each strategy against its formula, computed by hand (through Flower's Strategy interface)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import hfl
from hfl.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from hfl.server import ClientFailure, ClientProxy, SimpleClientManager
from hfl.strategy import FedAdagrad, FedAdam, FedAvg, FedAvgM, FedProx, FedYogi
from hfl.strategy.aggregate import weighted_average, weighted_metrics

from .helpers import fedavg_by_hand, linear_client_fn

RNG = np.random.default_rng(0)
W0 = [RNG.normal(size=(3, 2)).astype(np.float32), RNG.normal(size=2).astype(np.float32)]


class Proxy(ClientProxy):
    """A client handle that is never called (the strategy only samples and labels)."""

    def get_properties(self, *a: Any) -> Any:
        raise NotImplementedError

    def get_parameters(self, *a: Any) -> Any:
        raise NotImplementedError

    def fit(self, *a: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, *a: Any) -> Any:
        raise NotImplementedError

    def reconnect(self, *a: Any) -> Any:
        raise NotImplementedError


def _manager(names: list[str]) -> SimpleClientManager:
    cm = SimpleClientManager()
    for n in names:
        cm.register(Proxy(n))
    return cm


def _results(k: int, seed: int) -> tuple[list[tuple[ClientProxy, FitRes]], list[list[np.ndarray]], list[int]]:
    rng = np.random.default_rng(seed)
    models = [[(a + rng.normal(size=a.shape)).astype(np.float32) for a in W0] for _ in range(k)]
    ns = [int(n) for n in rng.integers(1, 50, size=k)]
    res: list[tuple[ClientProxy, FitRes]] = [
        (Proxy(f"c{i}"), FitRes(Status(Code.OK, "Success"), ndarrays_to_parameters(m), n, {"acc": float(i)}))
        for i, (m, n) in enumerate(zip(models, ns, strict=True))]
    return res, models, ns


def _mean(models: list[list[np.ndarray]], ns: list[int]) -> list[np.ndarray]:
    return [sum(n * m[j].astype(np.float64) for m, n in zip(models, ns, strict=True)) / sum(ns)
            for j in range(len(W0))]


def _run(strategy: FedAvg, rounds: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Drive configure_fit/aggregate_fit; returns final params and the per-round means."""
    params = [a.copy() for a in W0]
    means = []
    cm = _manager(["c0", "c1", "c2"])
    for r in range(1, rounds + 1):
        strategy.configure_fit(r, ndarrays_to_parameters(params), cm)
        res, models, ns = _results(3, seed=r)
        means.append(_mean(models, ns))
        new_p, _ = strategy.aggregate_fit(r, res, [])
        assert new_p is not None
        new = parameters_to_ndarrays(new_p)
        # Flower's FedAdam steps float32 models in float64 (its step size is a NumPy float64);
        # the others keep the model's dtype. tessera's server casts back to the model's dtypes.
        want = np.float64 if isinstance(strategy, FedAdam) else np.float32
        assert [a.dtype for a in new] == [np.dtype(want)] * len(W0)
        params = [a.astype(w.dtype) for a, w in zip(new, W0, strict=True)]
    return params, means


def test_fedavg_is_the_hand_computed_weighted_mean() -> None:
    res, models, ns = _results(4, seed=1)
    s = FedAvg(fit_metrics_aggregation_fn=weighted_metrics)
    s.configure_fit(1, ndarrays_to_parameters(W0), _manager(["c0", "c1", "c2", "c3"]))
    new_p, metrics = s.aggregate_fit(1, res, [])
    assert new_p is not None
    for got, want in zip(parameters_to_ndarrays(new_p), _mean(models, ns), strict=True):
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=0, atol=1e-6)
    assert metrics["acc"] == pytest.approx(sum(i * n for i, n in enumerate(ns)) / sum(ns))


def test_weighted_average_exact_small_case() -> None:
    out = weighted_average([([np.array([1.0, 2.0])], 1), ([np.array([4.0, 8.0])], 3)])
    np.testing.assert_array_equal(out[0], [13 / 4, 26 / 4])


def test_fedavg_accept_failures_false_keeps_model() -> None:
    res, _, _ = _results(2, seed=2)
    s = FedAvg(accept_failures=False)
    s.configure_fit(1, ndarrays_to_parameters(W0), _manager(["c0", "c1"]))
    assert s.aggregate_fit(1, res, [ClientFailure("c9", "straggler")]) == (None, {})


def test_fedavgm_momentum_formula() -> None:
    eta, beta = 0.7, 0.9
    got, means = _run(FedAvgM(server_learning_rate=eta, server_momentum=beta,
                              initial_parameters=ndarrays_to_parameters(W0)), 3)
    x = [a.astype(np.float64) for a in W0]
    v = None
    for m in means:
        d = [a - b for a, b in zip(x, m, strict=True)]
        v = d if v is None else [beta * vi + di for vi, di in zip(v, d, strict=True)]
        x = [xi - eta * vi for xi, vi in zip(x, v, strict=True)]
        x = [xi.astype(np.float32).astype(np.float64) for xi in x]  # the model is float32
    for g, w in zip(got, x, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [FedAdagrad, FedYogi, FedAdam])
def test_fedopt_formula(cls: type) -> None:
    # Flower's semantics: m_0 = v_0 = 0; FedAdagrad has beta_1 = beta_2 = 0; FedAdam's step is
    # bias-corrected, eta * sqrt(1 - b2^(t+1)) / (1 - b1^(t+1))
    eta, b1, b2, tau = 0.05, 0.8, 0.95, 1e-3
    init = ndarrays_to_parameters(W0)
    if cls is FedAdagrad:
        b1 = b2 = 0.0
        strategy = cls(eta=eta, tau=tau, initial_parameters=init)
    else:
        strategy = cls(eta=eta, beta_1=b1, beta_2=b2, tau=tau, initial_parameters=init)
    got, means = _run(strategy, 3)
    x = [a.astype(np.float64) for a in W0]
    m = [np.zeros_like(a) for a in x]
    v = [np.zeros_like(a) for a in x]
    for t, mean in enumerate(means, start=1):
        d = [mm - xi for mm, xi in zip(mean, x, strict=True)]
        m = [b1 * mi + (1 - b1) * di for mi, di in zip(m, d, strict=True)]
        if cls is FedAdagrad:
            v = [vi + di**2 for vi, di in zip(v, d, strict=True)]
        elif cls is FedYogi:
            v = [vi - (1 - b2) * di**2 * np.sign(vi - di**2) for vi, di in zip(v, d, strict=True)]
        else:
            v = [b2 * vi + (1 - b2) * di**2 for vi, di in zip(v, d, strict=True)]
        step = eta * np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1)) if cls is FedAdam else eta
        x = [xi + step * mi / (np.sqrt(vi) + tau) for xi, mi, vi in zip(x, m, v, strict=True)]
        x = [xi.astype(np.float32).astype(np.float64) for xi in x]
    for g, w in zip(got, x, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_fedopt_state_round_trips() -> None:
    s = FedAdam(initial_parameters=ndarrays_to_parameters(W0))
    _run(s, 2)
    t = FedAdam()
    t.load_state_dict(s.state_dict())
    assert t.current_weights is not None and s.current_weights is not None
    assert s.m_t is not None and t.m_t is not None
    for a, b in zip(s.m_t, t.m_t, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fedprox_sends_mu_and_aggregates_like_fedavg() -> None:
    s = FedProx(proximal_mu=0.3, min_fit_clients=2, min_available_clients=2)
    plan = s.configure_fit(1, ndarrays_to_parameters(W0), _manager(["a", "b", "c"]))
    assert plan and all(ins.config["proximal_mu"] == 0.3 for _, ins in plan)
    res, models, ns = _results(3, seed=5)
    new_p, _ = s.aggregate_fit(1, res, [])
    assert new_p is not None
    for g, w in zip(parameters_to_ndarrays(new_p), _mean(models, ns), strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6)


def test_sampling_respects_fraction_and_minimum() -> None:
    s = FedAvg(fraction_fit=0.1, min_fit_clients=3, min_available_clients=3)
    cm = _manager([f"c{i}" for i in range(50)])
    plan = s.configure_fit(1, ndarrays_to_parameters(W0), cm)
    assert len(plan) == 5 and len({c.cid for c, _ in plan}) == 5
    s2 = FedAvg(fraction_fit=0.01, min_fit_clients=3, min_available_clients=3)
    assert len(s2.configure_fit(1, ndarrays_to_parameters(W0), cm)) == 3


def test_simulated_fedavg_round_equals_hand_computation() -> None:
    h = hfl.simulate(linear_client_fn, 4, num_rounds=1,
                     strategy=FedAvg(min_fit_clients=4, min_available_clients=4, fraction_evaluate=0))
    init = linear_client_fn("0").get_parameters({})
    want = fedavg_by_hand(init, [0, 1, 2, 3])
    assert h.parameters is not None
    for g, w in zip(h.parameters, want, strict=True):
        np.testing.assert_allclose(g, w.astype(np.float32), rtol=0, atol=1e-7)


def test_fedprox_proximal_term_reaches_the_client() -> None:
    h0 = hfl.simulate(linear_client_fn, 3, num_rounds=2,
                      strategy=FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0))
    h1 = hfl.simulate(linear_client_fn, 3, num_rounds=2,
                      strategy=FedProx(proximal_mu=5.0, min_fit_clients=3, min_available_clients=3,
                                       fraction_evaluate=0))
    assert h0.parameters is not None and h1.parameters is not None
    # a strong proximal term keeps the model nearer the previous global model (zeros)
    assert np.abs(h1.parameters[0]).sum() < np.abs(h0.parameters[0]).sum()
