"""hfl's Flower API in its own words: names, signatures, defaults, numbers, deliberate refusals.

Flower's own unit tests run against hfl in ``benchmarks/flower_conformance.py``; these
tests cover the same behaviour without Flower's files.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pytest

import hfl
import hfl as fl
from hfl.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from hfl.clientapp import ClientApp
from hfl.common import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Status,
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from hfl.server import ClientProxy, History, Server, SimpleClientManager
from hfl.server.strategy.aggregate import aggregate, weighted_loss_avg
from hfl.serverapp import InMemoryGrid
from party import ConfigError

from .helpers import linear_client_fn

OK = Status(Code.OK, "Success")
f32 = np.float32


def _res(arrays: list[np.ndarray], n: int, metrics: dict[str, Any] | None = None) -> FitRes:
    return FitRes(OK, ndarrays_to_parameters(arrays), n, metrics or {})


class Proxy(ClientProxy):
    """An in-process client behind Flower's ClientProxy interface (a NumPyClient inside)."""

    def __init__(self, cid: str, client: Any = None) -> None:
        super().__init__(cid)
        self.client = client

    def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        raise NotImplementedError

    def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        from hfl.common import GetParametersRes

        return GetParametersRes(OK, ndarrays_to_parameters(self.client.get_parameters({})))

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        p, n, m = self.client.fit(parameters_to_ndarrays(ins.parameters), ins.config)
        return _res(p, n, m)

    def evaluate(self, ins: EvaluateIns, timeout: float | None, group_id: int | None) -> EvaluateRes:
        loss, n, m = self.client.evaluate(parameters_to_ndarrays(ins.parameters), ins.config)
        return EvaluateRes(OK, loss, n, m)

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        from hfl.common import DisconnectRes

        return DisconnectRes("UNKNOWN")


# -- the numbers -------------------------------------------------------------------------------
def test_fedadagrad_defaults_and_number_match_flower() -> None:
    s = fl.server.strategy.FedAdagrad(eta=0.1, eta_l=0.316, tau=0.5,
                                      initial_parameters=ndarrays_to_parameters([np.full(4, 0.1, f32)]))
    assert (s.beta_1, s.beta_2) == (0.0, 0.0)
    with pytest.raises(TypeError):
        fl.server.strategy.FedAdagrad(beta_1=0.9)  # type: ignore[call-arg]  # Flower has no such argument
    out, _ = s.aggregate_fit(1, [(Proxy("0"), _res([np.full(4, 0.2, f32)], 5)),
                                 (Proxy("1"), _res([np.full(4, 1.0, f32)], 5))], [])
    assert out is not None
    got = parameters_to_ndarrays(out)[0]
    # delta = 0.6 - 0.1 = 0.5, v = 0.25, x = 0.1 + 0.1 * 0.5 / (0.5 + 0.5) = 0.15 (v starts at 0)
    assert got.dtype == f32 and (got == f32(0.15)).all()


def test_fedadam_and_fedyogi_one_round_by_hand() -> None:
    x0, a, b = np.array([0.5, -1.0]), np.array([1.0, 0.0]), np.array([2.0, 3.0])
    mean = (1 * a + 3 * b) / 4
    d = mean - x0
    for cls, v in ((fl.server.strategy.FedAdam, (1 - 0.99) * d**2),
                   (fl.server.strategy.FedYogi, -(1 - 0.99) * d**2 * np.sign(-d**2))):
        s = cls(initial_parameters=ndarrays_to_parameters([x0]))
        out, _ = s.aggregate_fit(1, [(Proxy("a"), _res([a], 1)), (Proxy("b"), _res([b], 3))], [])
        m = (1 - 0.9) * d
        eta = s.eta * np.sqrt(1 - 0.99**2) / (1 - 0.9**2) if cls is fl.server.strategy.FedAdam else s.eta
        want = x0 + eta * m / (np.sqrt(v) + s.tau)
        assert out is not None
        np.testing.assert_allclose(parameters_to_ndarrays(out)[0], want, rtol=1e-12)
    assert fl.server.strategy.FedYogi().eta == 1e-2 and fl.server.strategy.FedYogi().tau == 1e-3


def test_fedavgm_uses_initial_parameters_and_momentum() -> None:
    x0 = [np.zeros((2, 3), f32), np.zeros(4, f32)]
    w = [np.arange(6, dtype=f32).reshape(2, 3), np.arange(4, dtype=f32)]
    results = [(Proxy("0"), _res(w, 1)), (Proxy("1"), _res(w, 2))]
    s = fl.server.strategy.FedAvgM(initial_parameters=ndarrays_to_parameters(x0),
                                   server_learning_rate=0.5, server_momentum=0.9)
    out1, _ = s.aggregate_fit(1, results, [])  # no configure_fit first, as in Flower
    out2, _ = s.aggregate_fit(2, results, [])
    assert out1 is not None and out2 is not None
    g1 = [x - m for x, m in zip(x0, w, strict=True)]                    # pseudo-gradient, round 1
    x1 = [x - 0.5 * g for x, g in zip(x0, g1, strict=True)]
    g2 = [x - m for x, m in zip(x1, w, strict=True)]
    v2 = [0.9 * a + b for a, b in zip(g1, g2, strict=True)]
    x2 = [x - 0.5 * v for x, v in zip(x1, v2, strict=True)]
    for got, want in zip(parameters_to_ndarrays(out2), x2, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_fedavg_inplace_and_reference_agree_and_sampling_returns_pairs() -> None:
    rng = np.random.default_rng(0)
    results = [(Proxy(str(i)), _res([rng.normal(size=(5, 3)), rng.normal(size=7)], n))
               for i, n in enumerate((1, 5, 2))]
    a, _ = fl.server.strategy.FedAvg(inplace=False).aggregate_fit(1, results, [])
    b, _ = fl.server.strategy.FedAvg().aggregate_fit(1, results, [])
    assert a is not None and b is not None
    for x, y in zip(parameters_to_ndarrays(a), parameters_to_ndarrays(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    s = fl.server.strategy.FedAvg(fraction_evaluate=0.05)
    assert tuple(s.num_fit_clients(num_available_clients=9)) == (9, 2)
    assert tuple(s.num_evaluation_clients(num_available_clients=40)) == (2, 2)
    assert aggregate([([np.array([1, 2])], 1), ([np.array([4, 8])], 3)])[0].tolist() == [3.25, 6.5]
    assert weighted_loss_avg([(1, 2.0), (2, 1.0), (1, 2.0)]) == 1.5


def test_fedprox_requires_mu_and_sends_it() -> None:
    with pytest.raises(TypeError):
        fl.server.strategy.FedProx()  # type: ignore[call-arg]
    cm = SimpleClientManager()
    for i in range(3):
        cm.register(Proxy(str(i)))
    plan = fl.server.strategy.FedProx(proximal_mu=0.1).configure_fit(1, ndarrays_to_parameters([]), cm)
    assert len(plan) == 3 and all(ins.config == {"proximal_mu": 0.1} for _, ins in plan)


# -- a custom strategy, as Flower's docs teach it --------------------------------------------------
def test_custom_aggregate_fit_gets_proxies_and_parameters_and_its_result_is_the_model() -> None:
    seen: list[tuple[int, list[str], list[int], int]] = []

    class Recording(fl.server.strategy.FedAvg):
        def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                          failures: list[Any]) -> tuple[Parameters | None, dict[str, Any]]:
            assert all(isinstance(p, ClientProxy) and isinstance(r.parameters, Parameters)
                       and all(isinstance(t, bytes) for t in r.parameters.tensors) for p, r in results)
            seen.append((server_round, [p.cid for p, _ in results],
                         [r.num_examples for _, r in results], len(failures)))
            params, metrics = super().aggregate_fit(server_round, results, failures)
            assert params is not None
            doubled = [2 * a for a in parameters_to_ndarrays(params)]
            return ndarrays_to_parameters(doubled), metrics

    h = hfl.simulate(linear_client_fn, 3, num_rounds=2, strategy=Recording(
        min_fit_clients=3, min_available_clients=3, fraction_evaluate=0))
    assert [s[0] for s in seen] == [1, 2]
    assert seen[0][1] == ["client_0", "client_1", "client_2"] and seen[0][3] == 0
    plain = hfl.simulate(linear_client_fn, 3, num_rounds=1, strategy=fl.server.strategy.FedAvg(
        min_fit_clients=3, min_available_clients=3, fraction_evaluate=0))
    one = hfl.simulate(linear_client_fn, 3, num_rounds=1, strategy=Recording(
        min_fit_clients=3, min_available_clients=3, fraction_evaluate=0))
    assert plain.parameters is not None and one.parameters is not None and h.parameters is not None
    for a, b in zip(plain.parameters, one.parameters, strict=True):
        np.testing.assert_allclose(2 * a, b, rtol=1e-6)  # its return value became the global model
    with pytest.raises(ConfigError, match="custom aggregate_fit"):
        hfl.simulate(linear_client_fn, 3, num_rounds=1, strategy=Recording(), secure_agg=True)


def test_flower_style_server_over_client_proxies() -> None:
    cm = SimpleClientManager()
    for i in range(3):
        cm.register(Proxy(str(i), linear_client_fn(str(i))))
    server = Server(client_manager=cm, strategy=fl.server.strategy.FedAvg(min_available_clients=3))
    server.set_max_workers(2)
    assert server.max_workers == 2 and server.client_manager() is cm
    h, elapsed = server.fit(num_rounds=2, timeout=None)  # Flower's return value
    assert isinstance(h, History) and elapsed > 0
    assert [r for r, _ in h.losses_distributed] == [1, 2]
    assert h.losses_distributed[1][1] < h.losses_distributed[0][1]
    with pytest.raises(TypeError, match="client_manager"):
        Server()


# -- history, clients, serialisation -----------------------------------------------------------
def test_history_api_uses_server_round() -> None:
    h = History()
    h.add_loss_distributed(server_round=1, loss=2.0)
    h.add_loss_centralized(server_round=0, loss=3.0)
    h.add_metrics_distributed(server_round=1, metrics={"acc": 0.9})
    h.add_metrics_distributed_fit(server_round=1, metrics={"n": 3})
    h.add_metrics_centralized(server_round=0, metrics={"acc": 0.5})
    assert h.losses_distributed == [(1, 2.0)] and h.losses_centralized == [(0, 3.0)]
    assert h.metrics_distributed == {"acc": [(1, 0.9)]} and h.metrics_centralized == {"acc": [(0, 0.5)]}
    with pytest.raises(TypeError):
        h.add_loss_distributed(rnd=1, loss=2.0)  # type: ignore[call-arg]


def test_ndarray_bytes_round_trip_and_never_pickle() -> None:
    arr = np.array([[1, 2], [3, 4]], dtype=np.int16)
    back = bytes_to_ndarray(ndarray_to_bytes(arr))
    assert back.dtype == arr.dtype and (back == arr).all()
    with pytest.raises(ValueError):
        ndarray_to_bytes(np.array([{"a": 1}], dtype=object))
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        bytes_to_ndarray(buf.getvalue())
    assert b"pickle" not in ndarray_to_bytes(arr) and not ndarray_to_bytes(arr).startswith(pickle.PROTO)


def test_numpyclient_methods_have_flower_defaults_and_missing_evaluate_is_a_failure() -> None:
    class FitOnly(fl.client.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return linear_client_fn("0").get_parameters(config)

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return linear_client_fn("0").fit(parameters, config)

    bare = fl.client.NumPyClient()
    assert bare.get_parameters({}) == [] and bare.evaluate([], {}) == (0.0, 0, {})
    assert isinstance(FitOnly().to_client(), fl.client.Client)
    h = hfl.simulate(lambda cid: FitOnly(), 2, num_rounds=1,
                     strategy=fl.server.strategy.FedAvg(min_fit_clients=2, min_available_clients=2))
    assert h.rounds[0]["fit_results"] == 2
    assert h.losses_distributed == []
    fails = h.rounds[0]["evaluate_failures"]
    assert set(fails) == {"client_0", "client_1"} and all("evaluate" in v for v in fails.values())


# -- the Message API ---------------------------------------------------------------------------
def _client_app(value: float, n: int) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        assert msg.content["config"]["server-round"] >= 1
        new = [np.full_like(a, value) for a in arrays]
        return Message(RecordDict({"arrays": ArrayRecord(new),
                                   "metrics": MetricRecord({"num-examples": n, "loss": value})}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": n, "acc": value})}),
                       reply_to=msg)

    return app


def test_serverapp_fedavg_start_over_an_in_memory_grid() -> None:
    grid = InMemoryGrid([_client_app(1.0, 1), _client_app(4.0, 3)])
    init = ArrayRecord([np.zeros(3, f32)])
    result = fl.serverapp.strategy.FedAvg().start(grid=grid, initial_arrays=init, num_rounds=2,
                                                  train_config=ConfigRecord({"lr": 0.1}))
    np.testing.assert_allclose(result.arrays.to_numpy_ndarrays()[0], np.full(3, 13 / 4), rtol=1e-6)
    assert result.train_metrics_clientapp[2]["loss"] == pytest.approx(13 / 4)
    assert result.evaluate_metrics_clientapp[1]["acc"] == pytest.approx(13 / 4)


def test_serverapp_and_legacy_fedadagrad_agree() -> None:
    grid = InMemoryGrid([_client_app(0.2, 5), _client_app(1.0, 5)])
    s = fl.serverapp.strategy.FedAdagrad(eta=0.1, tau=0.5, fraction_evaluate=0.0)
    result = s.start(grid=grid, initial_arrays=ArrayRecord([np.full(4, 0.1, f32)]), num_rounds=1)
    assert (result.arrays.to_numpy_ndarrays()[0] == f32(0.15)).all()


def test_records_check_their_values() -> None:
    with pytest.raises(TypeError):
        MetricRecord({"a": "text"})
    with pytest.raises(TypeError):
        RecordDict({"x": {"not": "a record"}})
    a = Array(np.arange(3.0))
    assert a.shape == (3,) and a.dtype == "float64" and (a.numpy() == np.arange(3.0)).all()
    assert ArrayRecord([np.ones(2)]).object_id == ArrayRecord({"0": Array(np.ones(2))}).object_id
    assert ArrayRecord([np.ones(2)]).object_id != ArrayRecord([np.ones(2) * 2]).object_id


# -- deliberate differences are errors at the call site -----------------------------------------
def test_deliberate_differences_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="mutual TLS"):
        fl.client.start_client(server_address="127.0.0.1:1", client=fl.client.NumPyClient().to_client(),
                               insecure=True)
    with pytest.raises(ConfigError, match=r"root_certificates.*mutual TLS"):
        fl.client.start_client(server_address="127.0.0.1:1", client=fl.client.NumPyClient(),
                               root_certificates=b"pem")
    with pytest.raises(ConfigError, match="certificates"):
        fl.server.start_server(server_address="127.0.0.1:1", certificates=(b"a", b"b", b"c"))
    with pytest.raises(NotImplementedError, match="mods"):
        ClientApp(mods=[lambda msg, ctx, call_next: call_next(msg, ctx)])


def test_bytes_to_ndarray_serialises_np_load_against_the_cpython_ast_race() -> None:
    """``np.load``'s header parser (``ast.literal_eval``) is not thread-safe before
    CPython 3.11.8 (python/cpython#106905); a CI run lost a client's round to it.
    While :data:`NPY_LOCK` is held, a decode in another thread must wait."""
    import threading

    from hfl.common.parameter import NPY_LOCK

    data = ndarray_to_bytes(np.arange(4.0))
    done = threading.Event()
    out: list[Any] = []

    def decode() -> None:
        out.append(bytes_to_ndarray(data))
        done.set()

    with NPY_LOCK:
        t = threading.Thread(target=decode, daemon=True)
        t.start()
        assert not done.wait(0.3), "bytes_to_ndarray ran np.load without holding NPY_LOCK"
    assert done.wait(5) and (out[0] == np.arange(4.0)).all() and out[0].flags.writeable
