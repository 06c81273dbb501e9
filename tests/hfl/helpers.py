"""Tiny deterministic NumPy clients for the HFL tests (no torch: fast and bit-reproducible)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

import hfl

DIM = 5
TRUE_W = np.arange(1, DIM + 1, dtype=np.float64) / DIM


def client_data(i: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + i)
    n = n if n is not None else 20 + 7 * i
    x = rng.normal(size=(n, DIM))
    y = x @ TRUE_W + 0.5 + 0.1 * rng.normal(size=n)
    return x, y


class LinearClient(hfl.NumPyClient):
    """Linear regression [w (DIM,), b ()] trained by a few GD steps; fully deterministic."""

    def __init__(self, i: int, *, steps: int = 3, lr: float = 0.05) -> None:
        self.i = i
        self.x, self.y = client_data(i)
        self.steps = steps
        self.lr = lr

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(DIM, np.float32), np.zeros((), np.float32)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        w, b = (np.asarray(p, np.float64).copy() for p in parameters)
        w0 = w.copy()
        mu = float(config.get("proximal_mu", 0.0))
        for _ in range(self.steps):
            err = self.x @ w + b - self.y
            gw = self.x.T @ err / len(self.y) + mu * (w - w0)
            gb = err.mean()
            w -= self.lr * gw
            b -= self.lr * gb
        loss = float(np.mean((self.x @ w + b - self.y) ** 2))
        return [w.astype(np.float32), np.asarray(b, np.float32)], len(self.y), {"train_loss": loss}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        w, b = (np.asarray(p, np.float64) for p in parameters)
        err = self.x @ w + b - self.y
        return float(np.mean(err**2)), len(self.y), {"mae": float(np.mean(np.abs(err)))}


def linear_client_fn(cid: str) -> LinearClient:
    return LinearClient(int(cid))


class BadClient(LinearClient):
    """Returns a broken result: ``mode`` is 'shape', 'nan', 'count' or 'raise'."""

    def __init__(self, i: int, mode: str) -> None:
        super().__init__(i)
        self.mode = mode

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        params, n, m = super().fit(parameters, config)
        if self.mode == "shape":
            params[0] = np.zeros(DIM + 1, np.float32)
        elif self.mode == "nan":
            params[0] = params[0].copy()
            params[0][1] = np.nan
        elif self.mode == "count":
            params = params[:1]
        elif self.mode == "raise":
            raise RuntimeError("out of memory on the GPU")
        return params, n, m


class SlowClient(LinearClient):
    """Sleeps ``delay_s`` in fit (a straggler); ``gate`` lets a test release it."""

    def __init__(self, i: int, delay_s: float, gate: threading.Event | None = None) -> None:
        super().__init__(i)
        self.delay_s = delay_s
        self.gate = gate

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        if self.gate is not None:
            self.gate.wait(self.delay_s)
        else:
            time.sleep(self.delay_s)
        return super().fit(parameters, config)


def fedavg_by_hand(params: list[np.ndarray], clients: list[int], *, steps: int = 3,
                   lr: float = 0.05) -> list[np.ndarray]:
    """One FedAvg round computed directly: Σ n_k w_k / Σ n_k."""
    outs = [LinearClient(i, steps=steps, lr=lr).fit(params, {}) for i in clients]
    total = sum(n for _, n, _ in outs)
    return [sum(n * np.asarray(p[j], np.float64) for p, n, _ in outs) / total
            for j in range(len(params))]
