"""Central DP strategy wrappers (Flower's names) with accounting, and adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dp.accounting import central_epsilon
from hfl.common import Code, FitRes, Parameters, Status
from hfl.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from hfl.server.client_manager import SimpleClientManager
from hfl.server.client_proxy import ClientProxy
from hfl.server.strategy import FedAvg
from hfl.server.strategy.dp_adaptive_clipping import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
)
from hfl.server.strategy.dp_fixed_clipping import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from party.errors import ConfigError


class _Proxy(ClientProxy):
    def get_properties(self, *a):  # pragma: no cover - never called
        raise NotImplementedError

    get_parameters = fit = evaluate = reconnect = get_properties


def _manager(n: int) -> SimpleClientManager:
    cm = SimpleClientManager()
    for i in range(n):
        cm.register(_Proxy(str(i)))
    return cm


def _res(arrays, n=10, metrics=None):
    return (_Proxy("x"), FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n,
                                dict(metrics or {})))


def _global(d=1000):
    return [np.zeros(d, dtype=np.float64)]


def test_server_side_fixed_clipping_clips_then_noises_the_mean_and_accounts():
    m, d, clip, z = 5, 20_000, 1.0, 0.8
    s = DifferentialPrivacyServerSideFixedClipping(FedAvg(), z, clip, m)
    cm = _manager(50)
    s.configure_fit(1, ndarrays_to_parameters(_global(d)), cm)
    rng = np.random.default_rng(0)
    ups = [rng.normal(size=d) * (3.0 if i % 2 else 0.001) for i in range(m)]
    params, metrics = s.aggregate_fit(1, [_res([u]) for u in ups], [])
    got = parameters_to_ndarrays(params)[0]
    clipped = [u * min(1.0, clip / np.linalg.norm(u)) for u in ups]
    err = got - np.mean(clipped, axis=0)
    assert err.std() == pytest.approx(z * clip / m, rel=0.03)  # Flower's stdv z·C/m
    assert metrics["dp_epsilon"] == pytest.approx(central_epsilon(z, m / 50, 1, 1e-5))
    s.configure_fit(2, params, cm)
    _, m2 = s.aggregate_fit(2, [_res([u]) for u in ups], [])
    assert m2["dp_epsilon"] == pytest.approx(central_epsilon(z, m / 50, 2, 1e-5))
    assert m2["dp_epsilon_round"] == pytest.approx(m2["dp_epsilon"] - metrics["dp_epsilon"])
    # a failure makes the round keep the model, as in Flower
    assert s.aggregate_fit(3, [_res([ups[0]])], [RuntimeError("x")]) == (None, {})


def test_zero_noise_is_exactly_fedavg_of_the_clipped_updates():
    s = DifferentialPrivacyServerSideFixedClipping(FedAvg(), 0.0, 0.5, 3)
    s.configure_fit(1, ndarrays_to_parameters(_global(4)), _manager(3))
    ups = [np.array([3.0, 4.0, 0.0, 0.0]), np.array([0.1, 0.0, 0.0, 0.0]),
           np.array([0.0, 0.0, 0.0, 10.0])]
    params, metrics = s.aggregate_fit(1, [_res([u], n=1) for u in ups], [])
    want = (np.array([0.3, 0.4, 0, 0]) + ups[1] + np.array([0, 0, 0, 0.5])) / 3
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], want, atol=1e-12)
    assert math.isinf(metrics["dp_epsilon"])  # no noise, no finite epsilon


def test_target_epsilon_picks_the_noise_and_checkpoints_restore_the_accountant():
    s = DifferentialPrivacyServerSideFixedClipping(FedAvg(), None, 1.0, 10, target_epsilon=3.0,
                                                  num_rounds=20)
    cm = _manager(100)
    params = ndarrays_to_parameters(_global(10))
    s.configure_fit(1, params, cm)
    z = s.noise_multiplier
    assert central_epsilon(z, 0.1, 20, 1e-5) <= 3.0 < central_epsilon(z * 0.97, 0.1, 20, 1e-5)
    ups = [_res([np.ones(10)]) for _ in range(10)]
    s.aggregate_fit(1, ups, [])
    state = s.state_dict()
    t = DifferentialPrivacyServerSideFixedClipping(FedAvg(), None, 1.0, 10, target_epsilon=3.0,
                                                  num_rounds=20)
    t.load_state_dict(state)
    assert t.noise_multiplier == z and t.accountant.total == pytest.approx(s.accountant.total)
    with pytest.raises(ValueError, match="target_epsilon"):
        DifferentialPrivacyServerSideFixedClipping(FedAvg(), None, 1.0, 10)


def test_secure_aggregation_needs_the_client_side_wrapper():
    server_side = DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 1.0, 3)
    assert not server_side.supports_secure_aggregation
    with pytest.raises(ConfigError, match="client-side wrapper"):
        server_side.aggregate_mean(1, _global(3), 3, [])
    client_side = DifferentialPrivacyClientSideFixedClipping(FedAvg(), 1.0, 2.0, 4)
    assert client_side.supports_secure_aggregation
    ins = client_side.configure_fit(1, ndarrays_to_parameters(_global(50_000)), _manager(4))
    assert all(fi.config["clipping_norm"] == 2.0 for _, fi in ins)
    params, metrics = client_side.aggregate_mean(1, _global(50_000), 40, [(10, {})] * 4)
    assert parameters_to_ndarrays(params)[0].std() == pytest.approx(1.0 * 2.0 / 4, rel=0.03)
    assert metrics["dp_epsilon"] > 0


def test_adaptive_clipping_converges_to_the_target_quantile():
    rng = np.random.default_rng(1)
    m, d = 50, 8
    s = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(), 0.0, m, initial_clipping_norm=0.05, target_clipped_quantile=0.7)
    cm = _manager(m)
    for r in range(1, 120):
        s.configure_fit(r, ndarrays_to_parameters([np.zeros(d)]), cm)
        norms = rng.uniform(0.0, 2.0, m)  # the 0.7-quantile of U[0, 2] is 1.4
        ups = []
        for nm in norms:
            v = rng.normal(size=d)
            ups.append(_res([v / np.linalg.norm(v) * nm]))
        s.aggregate_fit(r, ups, [])
    assert s.clipping_norm == pytest.approx(1.4, abs=0.15)


def test_client_side_adaptive_reads_the_norm_bits_and_noise_uses_this_rounds_clip():
    s = DifferentialPrivacyClientSideAdaptiveClipping(FedAvg(), 0.5, 20, initial_clipping_norm=1.0,
                                                      clipped_count_stddev=1.0)
    assert s.update_noise_multiplier == pytest.approx((0.5**-2 - 2.0**-2) ** -0.5)
    s.configure_fit(1, ndarrays_to_parameters(_global(10)), _manager(20))
    # all twenty unclipped (norm <= C): C shrinks
    s.aggregate_mean(1, _global(10), 20, [(1, {"norm_bit": True})] * 20)
    assert s.clipping_norm < 1.0
    with pytest.raises(KeyError, match="norm_bit"):
        s.aggregate_mean(2, _global(10), 20, [(1, {})] * 20)
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        DifferentialPrivacyServerSideAdaptiveClipping(FedAvg(), 1.0, 10)  # 10/20 < 1/2


def test_wrappers_keep_the_wrapped_strategys_attributes_and_flower_reprs():
    inner = FedAvg(fraction_fit=0.3)
    s = DifferentialPrivacyServerSideFixedClipping(inner, 1.0, 1.0, 3)
    assert s.fraction_fit == 0.3
    assert "Server-Side Fixed Clipping" in repr(s)
    assert isinstance(s.initialize_parameters(_manager(1)), (Parameters, type(None)))


def test_client_side_clipping_end_to_end_with_secure_aggregation():
    import hfl
    from hfl.client.mod import fixedclipping_mod, with_mods

    class Big(hfl.client.NumPyClient):
        def get_parameters(self, config):
            return [np.zeros(30)]

        def fit(self, parameters, config):
            return [parameters[0] + 5.0], 7, {}

        def evaluate(self, parameters, config):
            return 0.0, 1, {}

    inner = FedAvg(fraction_evaluate=0.0,
                   initial_parameters=ndarrays_to_parameters([np.zeros(30)]))
    s = DifferentialPrivacyClientSideFixedClipping(inner, 0.0, 2.0, 4)
    h = hfl.simulate(lambda cid: with_mods(Big(), fixedclipping_mod), 4, strategy=s,
                     num_rounds=2, secure_agg=True)
    assert [e for _, e in h.metrics_distributed_fit["dp_epsilon"]] == [math.inf, math.inf]
    assert h.rounds[-1]["secure_agg"]["survivors"] == 4


def test_client_mods_clip_report_bits_and_add_local_noise():
    from hfl.client.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod, with_mods

    sent = [np.zeros(3), np.zeros(1)]
    got = [np.array([3.0, 0.0, 0.0]), np.array([4.0])]
    out, _ = fixedclipping_mod(sent, got, {"clipping_norm": 1.0}, {})
    assert np.linalg.norm(np.concatenate(out)) == pytest.approx(1.0)
    _, m = adaptiveclipping_mod(sent, got, {"clipping_norm": 10.0}, {})
    assert m["norm_bit"] is True
    _, m = adaptiveclipping_mod(sent, got, {"clipping_norm": 1.0}, {})
    assert m["norm_bit"] is False
    with pytest.raises(KeyError, match="DifferentialPrivacyClientSide"):
        fixedclipping_mod(sent, got, {}, {})
    mod = LocalDpMod(clipping_norm=1.0, sensitivity=1.0, epsilon=2.0, delta=1e-5)
    big = [np.zeros(100_000)]
    noisy, _ = mod([np.zeros(100_000)], big, {}, {})
    assert noisy[0].std() == pytest.approx(math.sqrt(2 * math.log(1.25e5)) / 2.0, rel=0.02)
    with pytest.raises(NotImplementedError, match="tessera runs only its DP mods"):
        with_mods(object(), print)


def test_history_plot_shows_the_privacy_spent():
    import hfl

    plain = hfl.History()
    plain.add_metrics_distributed_fit(server_round=1, metrics={"accuracy": 0.5})
    dp = hfl.History()
    for r in (1, 2):
        dp.add_metrics_distributed_fit(server_round=r, metrics={"dp_epsilon": 1.0 * r,
                                                                "dp_delta": 1e-5})
    from io import BytesIO

    import matplotlib.image as mpimg

    w_plain = mpimg.imread(BytesIO(plain.plot_png())).shape[1]
    w_dp = mpimg.imread(BytesIO(dp.plot_png())).shape[1]
    assert w_dp == pytest.approx(w_plain * 1.5, rel=0.01)  # a third panel: epsilon per round


def test_client_app_runs_the_dp_mods_on_a_legacy_client():
    import hfl
    from hfl.client.mod import adaptiveclipping_mod
    from hfl.clientapp import ClientApp
    from hfl.common.message import Context

    class Big(hfl.client.NumPyClient):
        def fit(self, parameters, config):
            return [parameters[0] + 3.0], 1, {}

    app = ClientApp(client_fn=lambda ctx: Big(), mods=[adaptiveclipping_mod])
    client = app.client(Context())
    res = client.fit(hfl.common.FitIns(ndarrays_to_parameters([np.zeros(4)]),
                                       {"clipping_norm": 1.0}))
    out = parameters_to_ndarrays(res.parameters)[0]
    assert np.linalg.norm(out) == pytest.approx(1.0) and res.metrics["norm_bit"] is False
    with pytest.raises(NotImplementedError, match="tessera runs only its DP mods"):
        ClientApp(client_fn=lambda ctx: Big(), mods=[print])
