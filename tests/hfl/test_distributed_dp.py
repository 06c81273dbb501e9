"""Distributed DP inside hfl's secure aggregation: secure_agg={"dp": {...}}."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hfl
from party.errors import ConfigError


class _Client(hfl.client.NumPyClient):
    def __init__(self, i: int) -> None:
        self.i = i

    def get_parameters(self, config):
        return [np.zeros(40)]

    def fit(self, parameters, config):
        return [parameters[0] + 0.05 * (self.i + 1)], 10 * (self.i + 1), {}

    def evaluate(self, parameters, config):
        return 0.0, 1, {}


def _run(dp: dict, rounds: int = 2, n: int = 5) -> hfl.History:
    strategy = hfl.server.strategy.FedAvg(
        fraction_evaluate=0.0, initial_parameters=hfl.ndarrays_to_parameters([np.zeros(40)]))
    return hfl.simulate(lambda cid: _Client(int(cid)), n, strategy=strategy, num_rounds=rounds,
                        secure_agg={"dp": dp})


def test_without_noise_the_model_moves_by_the_mean_of_the_clipped_updates():
    got: list[np.ndarray] = []

    class Spy(hfl.server.strategy.FedAvg):
        def aggregate_mean(self, server_round, mean, num_examples, metrics):
            got.append(np.asarray(mean[0]))
            return super().aggregate_mean(server_round, mean, num_examples, metrics)

    strategy = Spy(fraction_evaluate=0.0,
                   initial_parameters=hfl.ndarrays_to_parameters([np.zeros(40)]))
    h = hfl.simulate(lambda cid: _Client(int(cid)), 5, strategy=strategy, num_rounds=1,
                     secure_agg={"dp": {"noise_multiplier": 0.0, "clip": 1.0, "bits": 20}})
    ups = [np.full(40, 0.05 * (i + 1)) for i in range(5)]
    want = np.mean([u * min(1.0, 1.0 / np.linalg.norm(u)) for u in ups], axis=0)  # unweighted
    np.testing.assert_allclose(got[0], want, atol=2e-3)
    assert math.isinf(h.metrics_distributed_fit["dp_epsilon"][0][1])


def test_noised_rounds_report_epsilon_per_round_and_in_total():
    h = _run({"noise_multiplier": 1.0, "clip": 1.0}, rounds=2)
    eps = [e for _, e in h.metrics_distributed_fit["dp_epsilon"]]
    inc = [e for _, e in h.metrics_distributed_fit["dp_epsilon_round"]]
    assert len(eps) == 2 and 0 < eps[0] < eps[1]
    assert inc[0] == pytest.approx(eps[0]) and inc[1] == pytest.approx(eps[1] - eps[0])
    assert all(r["secure_agg"]["survivors"] == 5 for r in h.rounds)


def test_bad_dp_settings_are_refused_before_training():
    with pytest.raises(ConfigError, match="overflow"):
        _run({"noise_multiplier": 80.0, "clip": 1.0, "bits": 8})
    with pytest.raises(ConfigError, match="unknown dp setting"):
        _run({"noise_multiplier": 1.0, "clip": 1.0, "sigma": 2})
    with pytest.raises(ConfigError, match="needs 'clip'"):
        _run({"noise_multiplier": 1.0})


def test_target_epsilon_picks_the_distributed_noise():
    h = _run({"target_epsilon": 20.0, "num_rounds": 2, "clip": 1.0}, rounds=2)
    eps = h.metrics_distributed_fit["dp_epsilon"][-1][1]
    z = h.metrics_distributed_fit["dp_noise_multiplier"][-1][1]
    assert 19.0 < eps <= 20.0 and z > 0
    with pytest.raises(ConfigError, match="num_rounds"):
        _run({"target_epsilon": 3.0, "clip": 1.0})
    with pytest.raises(ConfigError, match="one"):
        _run({"target_epsilon": 3.0, "noise_multiplier": 1.0, "num_rounds": 2, "clip": 1.0})
