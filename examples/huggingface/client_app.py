"""Flower's HuggingFace quick start client, ported: ``IMDBClient`` and ``client_fn``.

As in Flower (``import flwr as fl`` becomes ``import hfl as fl``), the client is a
``NumPyClient`` whose parameters are the model's ``state_dict()`` values in order;
``fit`` trains one epoch with AdamW on ``outputs.loss``, ``evaluate`` reports loss
and accuracy on the client's share of the held-out reviews. ``client_fn`` reads
``context.node_config["partition-id"]`` / ``["num-partitions"]`` and the run
settings from ``context.run_config`` (see :data:`DEFAULTS`).
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import torch

import hfl as fl  # Flower: import flwr as fl
from examples.huggingface.task import (
    DataConfig,
    get_model,
    get_params,
    load_data,
    set_params,
    test,
    train,
)

warnings.filterwarnings("ignore", category=FutureWarning)

#: run_config keys (Flower's ``[tool.flwr.app.config]``) and their defaults
DEFAULTS: dict[str, Any] = {
    "max-length": 128,       # tokens per review (head and tail kept)
    "batch-size": 16,
    "reviews-per-client": None,  # default: an even share of the 22,904-review pool
    "test-size": 2000,       # held-out reviews (no text shared with the pool)
    "local-epochs": 1,
    "lr": 5e-5,
    "seed": 0,
}


_NETS: dict[int, Any] = {}
_NETS_LOCK = threading.Lock()


def model_for(partition_id: int, seed: int = 0) -> Any:
    """This partition's model object, loaded once per process.

    A simulation builds the client anew for every instruction (as Flower does); keeping
    its 91 MB model saves a reload each time. Its weights are always replaced by the
    server's in fit/evaluate, and one partition never runs two instructions at once.
    """
    with _NETS_LOCK:
        if partition_id not in _NETS:
            _NETS[partition_id] = get_model(seed=seed)
        return _NETS[partition_id]


class IMDBClient(fl.client.NumPyClient):
    def __init__(self, trainloader: Any, testloader: Any, *, epochs: int = 1, lr: float = 5e-5,
                 seed: int = 0, net: Any = None) -> None:
        self.device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        self.trainloader = trainloader
        self.testloader = testloader
        self.epochs = epochs
        self.lr = lr
        self.seed = seed
        self.net = net if net is not None else get_model(seed=seed)
        self.net.to(self.device)

    def get_parameters(self, config: dict[str, Any]) -> list[Any]:
        return get_params(self.net)

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int, dict[str, Any]]:
        set_params(self.net, parameters)
        torch.manual_seed(self.seed + int(config.get("server_round", 0)))  # dropout masks
        t0 = time.perf_counter()
        loss = train(self.net, self.trainloader, epochs=self.epochs, device=self.device, lr=self.lr)
        train_s = time.perf_counter() - t0
        return get_params(self.net), len(self.trainloader.dataset), {"train_loss": loss,
                                                                      "train_s": train_s}

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        set_params(self.net, parameters)
        loss, accuracy = test(self.net, self.testloader, device=self.device)
        return float(loss), len(self.testloader.dataset), {"accuracy": float(accuracy)}


def settings(run_config: dict[str, Any] | None) -> dict[str, Any]:
    out = {**DEFAULTS, **(run_config or {})}
    unknown = sorted(set(out) - set(DEFAULTS))
    if unknown:
        from party import ConfigError

        raise ConfigError(f"unknown run_config keys {unknown}; known: {sorted(DEFAULTS)}")
    return out


def data_config(s: dict[str, Any]) -> DataConfig:
    return DataConfig(max_length=int(s["max-length"]), batch_size=int(s["batch-size"]),
                      test_size=int(s["test-size"]), seed=int(s["seed"]),
                      limit=None if s["reviews-per-client"] is None else int(s["reviews-per-client"]))


def client_fn(context: Any) -> Any:
    """Construct a Client that will be run in a ClientApp."""
    # Read the node_config to fetch data partition associated to this node
    partition_id = context.node_config["partition-id"]
    num_partitions = context.node_config["num-partitions"]

    # Read the run config to get settings to configure the Client
    s = settings(getattr(context, "run_config", None))
    trainloader, testloader = load_data(partition_id, num_partitions, data_config(s))
    return IMDBClient(trainloader, testloader, epochs=int(s["local-epochs"]), lr=float(s["lr"]),
                      seed=int(s["seed"]), net=model_for(partition_id, int(s["seed"]))).to_client()
