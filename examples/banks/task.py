"""Credit-default model and data for the three-bank example (FATE's default_credit_homo split).

Each bank holds 8,000 customers with the same 23 (already scaled) features and the
label ``y`` (default next month). The model is a small MLP (23 → 32 → 1) trained
with Adam on binary cross-entropy; evaluation reports loss, accuracy and ROC AUC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hfl import NumPyClient
from hfl.torch_utils import get_parameters, set_parameters
from party import ConfigError
from party.files import data_dir

DATA_DIR = data_dir() / "fate"
FILES = {
    "bank_a": "default_credit_homo_guest.csv",
    "bank_b": "default_credit_homo_host_1.csv",
    "bank_c": "default_credit_homo_host_2.csv",
}
TEST_FILE = "default_credit_homo_test.csv"
FEATURES = [f"x{i}" for i in range(23)]


def load_csv(path: str | Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 N×23, labels float32 N) from one FATE homo CSV; checks its columns."""
    p = Path(path)
    try:
        df = pd.read_csv(p, nrows=limit)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read CSV ({e})") from None
    missing = [c for c in ["id", "y", *FEATURES] if c not in df.columns]
    if missing:
        raise ConfigError(f"{p}: missing columns {missing[:5]}")
    if df["id"].duplicated().any():
        raise ConfigError(f"{p}: duplicate ids, e.g. {df['id'][df['id'].duplicated()].iloc[0]!r}")
    x = df[FEATURES].to_numpy(np.float32)
    y = df["y"].to_numpy()
    if not np.isfinite(x).all():
        raise ConfigError(f"{p}: {int((~np.isfinite(x)).sum())} missing/non-finite feature values")
    if not set(np.unique(y)) <= {0, 1}:
        raise ConfigError(f"{p}: label y must be 0/1, found {sorted(set(np.unique(y)))[:5]}")
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(23, 32), nn.ReLU(), nn.Linear(32, 1))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC (ties get half credit)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, Any]]:
    model.eval()
    logits = model(x).squeeze(1)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, y))
    p = torch.sigmoid(logits).numpy()
    acc = float(((p >= 0.5) == (y.numpy() == 1)).mean())
    return loss, {"accuracy": acc, "auc": roc_auc(y.numpy(), p)}


class BankClient(NumPyClient):
    """One bank: local epochs of Adam on its own customers; its data never leaves it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 1, batch_size: int = 64,
                 lr: float = 1e-2, seed: int = 0) -> None:
        self.x, self.y = x, y
        self.model = make_model()
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return get_parameters(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        set_parameters(self.model, parameters)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(self.seed + 7919 * int(config.get("server_round", 0)))
        self.model.train()
        for _ in range(int(config.get("epochs", self.epochs))):
            perm = torch.randperm(len(self.y), generator=g)
            for i in range(0, len(self.y), self.batch_size):
                idx = perm[i:i + self.batch_size]
                opt.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(
                    self.model(self.x[idx]).squeeze(1), self.y[idx])
                loss.backward()
                opt.step()
        train_loss, m = evaluate(self.model, self.x, self.y)
        return get_parameters(self.model), len(self.y), {"train_loss": train_loss, "train_auc": m["auc"]}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        set_parameters(self.model, parameters)
        loss, m = evaluate(self.model, self.x, self.y)
        return loss, len(self.y), m
