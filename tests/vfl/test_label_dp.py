"""Label DP in split learning: the logit gradient is noised and calibrated by the accountant."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dp.accounting import central_epsilon
from party import Party, Role
from party.errors import ConfigError
from tests.vfl.conftest import ROWS
from tests.vfl.test_trainer import cfg, ok, run
from vfl.split import default_active, default_passive
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig


def test_noise_multiplier_meets_the_target_epsilon():
    c = TrainConfig(mode="plaintext", epochs=5, label_epsilon=3.0)
    z = c.label_noise_multiplier
    # every label is used once per epoch with sensitivity 1/B: E Gaussian steps, no sampling
    assert central_epsilon(z, 1.0, 5, 1e-5) <= 3.0 < central_epsilon(z * 0.97, 1.0, 5, 1e-5)
    assert TrainConfig(epochs=5).label_noise_multiplier == 0.0
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(grad_noise=1.0, label_epsilon=3.0)
    with pytest.raises(ConfigError, match="label_epsilon"):
        TrainConfig(label_epsilon=0.0)


def _grads(data: dict[str, Any], c: TrainConfig) -> list[np.ndarray]:
    grads: list[np.ndarray] = []

    def bank(party: Party, net: Any) -> Any:
        xa, y = data["xa"][:ROWS], data["y"][:ROWS]
        return ActiveTrainer(party, ["fintech"], default_active(xa.shape[1], seed=2), xa, y,
                             config=c).fit()

    def fin(party: Party, net: Any) -> Any:
        return PassiveTrainer(party, "bank", default_passive(data["xp"].shape[1], seed=3),
                              data["xp"][:ROWS], config=c,
                              on_gradient=lambda idx, g: grads.append(g)).fit()

    ok(run({"bank": bank, "fintech": fin}, {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}))
    return grads


def test_the_passive_sees_only_gradients_of_the_noised_loss_gradient(data: dict[str, Any]):
    clean = _grads(data, cfg("plaintext", epochs=1))
    noisy = _grads(data, cfg("plaintext", epochs=1, label_epsilon=1.0))
    again = _grads(data, cfg("plaintext", epochs=1, label_epsilon=1.0))
    assert len(clean) == len(noisy)
    # the first batch: same model, same rows; only the label gradient differs
    diff = noisy[0] - clean[0]
    assert np.abs(diff).max() > 10 * np.abs(clean[0]).max()  # z/B dwarfs |p - y|/B at eps 1
    # fresh secret noise per run (a passive cannot predict it from the shared seed)
    assert not np.allclose(noisy[0], again[0])
