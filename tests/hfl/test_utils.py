"""Partitioners, torch state_dict helpers, data loaders, client-side API checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import hfl
from hfl.client import handle
from hfl.datasets import load_mnist, read_idx
from hfl.messages import Failure, FitIns, FitRes
from hfl.partition import dirichlet, iid, pathological_non_iid
from hfl.torch_utils import get_parameters, proximal_term, set_parameters
from party import ConfigError, decode, encode

LABELS = np.repeat(np.arange(10), 600)  # 6000 examples, 600 per class


def test_iid_covers_everything_once() -> None:
    parts = iid(6000, 100, seed=1)
    allidx = np.concatenate(parts)
    assert len(parts) == 100 and sorted(allidx.tolist()) == list(range(6000))
    assert {len(p) for p in parts} == {60}
    assert np.mean([len(np.unique(LABELS[p])) for p in parts]) > 9


def test_pathological_non_iid_gives_two_shards_of_mostly_two_labels() -> None:
    parts = pathological_non_iid(LABELS, 100, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(6000))
    assert {len(p) for p in parts} == {60}
    classes = [len(np.unique(LABELS[p])) for p in parts]
    assert max(classes) <= 4 and np.mean(classes) <= 2.5


def test_dirichlet_skew_depends_on_alpha() -> None:
    skewed = dirichlet(LABELS, 20, alpha=0.1, seed=0)
    flat = dirichlet(LABELS, 20, alpha=100.0, seed=0)
    for parts in (skewed, flat):
        assert sorted(np.concatenate(parts).tolist()) == list(range(6000))

    def mean_classes(parts: list[np.ndarray]) -> float:
        return float(np.mean([np.sum(np.bincount(LABELS[p], minlength=10) > len(p) * 0.05)
                              for p in parts]))

    assert mean_classes(skewed) < 5 < mean_classes(flat)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet(LABELS, 5, alpha=0)


def test_torch_state_dict_round_trip_with_buffers() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    net.train()
    net(torch.randn(8, 3))
    arrays = get_parameters(net)
    assert [a.dtype for a in arrays].count(np.dtype(np.int64)) == 1  # num_batches_tracked
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    set_parameters(other, [a.copy() for a in arrays])
    for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="shape"):
        set_parameters(other, [np.zeros((5, 5), np.float32), *arrays[1:]])
    mu = 0.5
    g = [p.detach().clone() + 1 for p in net.parameters()]
    n = sum(p.numel() for p in net.parameters())
    assert proximal_term(net, g, mu).item() == pytest.approx(0.5 * mu * n)


def test_mnist_loader(data_dir: Path) -> None:
    xtr, ytr, xte, yte = load_mnist(data_dir / "mnist")
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert xtr.dtype == np.uint8 and ytr[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(yte).tolist()[:3] == [980, 1135, 1032]


def test_idx_reader_refuses_a_truncated_file(tmp_path: Path) -> None:
    f = tmp_path / "bad-idx"
    f.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x10" + b"\x01" * 5)
    with pytest.raises(ConfigError, match="body has 5 bytes"):
        read_idx(f)


def test_a_flower_numpyclient_ports_by_changing_imports() -> None:
    import hfl as fl  # was: import flwr as fl

    class FlowerClient(fl.client.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [np.ones(2, np.float32)]

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return [p + 1 for p in parameters], 10, {}

        def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return 0.5, 10, {"accuracy": 0.9}

    assert fl.server.strategy.FedAvg is hfl.FedAvg and fl.server.ServerConfig is hfl.ServerConfig
    c = FlowerClient().to_client()
    res = handle(c, decode(encode(FitIns([np.zeros(2, np.float32)], {"lr": 0.1}))))
    assert isinstance(res, FitRes) and res.num_examples == 10
    assert isinstance(decode(encode(res)), FitRes)


def test_client_exceptions_become_failures_and_bad_messages_are_refused() -> None:
    class Broken(hfl.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return []

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            return "not a tuple"

    out = handle(Broken(), FitIns([np.zeros(1)], {}))
    assert isinstance(out, Failure) and "fit must return" in out.message
    with pytest.raises(ValueError, match="num_examples"):
        FitRes([np.zeros(1)], "ten", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric"):
        FitRes([np.zeros(1)], 1, {"m": [1, 2]})
