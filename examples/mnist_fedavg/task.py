"""McMahan et al. (2017) MNIST models, data and local training (model and data only).

CNN: two 5×5 convolutions (32, 64 channels, each followed by 2×2 max pooling), a
fully connected layer of 512 units with ReLU and a softmax output: 1,663,370
parameters. 2NN: two hidden layers of 200 units (199,210 parameters).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hfl import NumPyClient
from hfl.datasets import load_mnist
from hfl.partition import iid, pathological_non_iid
from hfl.torch_utils import get_parameters, set_parameters
from party.files import data_dir

DATA_DIR = data_dir() / "mnist"


class CNN(nn.Module):
    """The paper's CNN (1,663,370 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class MLP(nn.Module):
    """The paper's 2NN (199,210 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200),
                                 nn.ReLU(), nn.Linear(200, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return CNN() if name == "cnn" else MLP()


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load(data_dir: str | Path = DATA_DIR) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST as float tensors in [0, 1], shape N×1×28×28."""
    xtr, ytr, xte, yte = load_mnist(data_dir)

    def f(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)

    return f(xtr), torch.from_numpy(ytr), f(xte), torch.from_numpy(yte)


def partition(labels: torch.Tensor, num_clients: int, *, non_iid: bool, seed: int = 0) -> list[np.ndarray]:
    y = labels.numpy()
    return pathological_non_iid(y, num_clients, seed=seed) if non_iid else iid(len(y), num_clients, seed=seed)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
          lr: float, seed: int) -> float:
    """Plain SGD, as in the paper; returns the mean loss of the last epoch."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    last = 0.0
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        last = total / len(y)
    return last


@torch.no_grad()
def test(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy)."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        loss += float(nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return loss / len(y), correct / len(y)


class MnistClient(NumPyClient):
    """One of the paper's clients: E local epochs of SGD with batch size B on its shard."""

    def __init__(self, cid: int, x: torch.Tensor, y: torch.Tensor, *, model: str, epochs: int,
                 batch_size: int, lr: float, timings: list[tuple[float, float]] | None = None) -> None:
        self.cid, self.x, self.y = cid, x, y
        self.model = make_model(model)
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.timings = timings

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return get_parameters(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        t0 = time.perf_counter()
        set_parameters(self.model, parameters)
        rnd = int(config.get("server_round", 0))
        loss = train(self.model, self.x, self.y, epochs=int(config.get("epochs", self.epochs)),
                     batch_size=self.batch_size, lr=float(config.get("lr", self.lr)),
                     seed=1_000_003 * rnd + self.cid)
        out = get_parameters(self.model)
        if self.timings is not None:
            self.timings.append((t0, time.perf_counter()))
        return out, len(self.y), {"train_loss": loss}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        set_parameters(self.model, parameters)
        loss, acc = test(self.model, self.x, self.y)
        return loss, len(self.y), {"accuracy": acc}


def central_evaluate(model_name: str, x: torch.Tensor, y: torch.Tensor) -> Any:
    """An ``evaluate_fn`` for the server: accuracy of the global model on the test set."""
    model = make_model(model_name)

    def evaluate_fn(rnd: int, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        set_parameters(model, parameters)
        loss, acc = test(model, x, y)
        return loss, {"accuracy": acc}

    return evaluate_fn
