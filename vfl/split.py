"""Split model pieces: bottom models, the active party's head, metrics (pure torch/numpy).

The model is ``logit = top(own(f_A(x_A)) + Σ_p f_p(x_p) W_p)``:

* ``f_A`` / ``f_p``: any ``nn.Module`` bottom model per party (rows × features -> rows × d);
* ``own``: the active party's own linear map ``d_A -> k`` (local, plain torch);
* ``W_p`` (d_p × k): the interactive layer with passive party p, additively shared
  in HE mode (:mod:`vfl.he.layer`), held by the active party in plaintext mode;
* ``top``: any ``nn.Module`` from k to one logit (binary classification).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vfl.metrics import auc_or_nan as auc
from vfl.metrics import ks_or_nan as ks

FloatArray = npt.NDArray[np.float64]


class ActiveHead(nn.Module):
    """The active party's model: bottom + own linear part + top."""

    def __init__(self, bottom: nn.Module, d: int, k: int, top: nn.Module) -> None:
        super().__init__()
        self.bottom = bottom
        self.own = nn.Linear(d, k)
        self.top = top
        self.k = k

    def forward(self, x: torch.Tensor, z_passive: torch.Tensor) -> torch.Tensor:
        return self.top(self.own(self.bottom(x)) + z_passive).squeeze(-1)


def mlp(n_in: int, hidden: int, n_out: int, *, out_act: bool = True) -> nn.Sequential:
    """A two-layer ReLU MLP (the default bottom model)."""
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    if out_act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def seeded_(module: nn.Module, seed: int) -> Any:
    """Re-initialise every Linear layer from ``seed`` with a private generator.

    Uses torch's default Linear init (uniform ±1/sqrt(fan_in)) but never the
    global RNG, so parties built in parallel threads get reproducible weights.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, nn.Linear):
                bound = 1.0 / float(np.sqrt(mod.in_features))
                mod.weight.uniform_(-bound, bound, generator=g)
                if mod.bias is not None:
                    mod.bias.uniform_(-bound, bound, generator=g)
    return module


def default_active(n_features: int, *, hidden: int = 32, d: int = 16, k: int = 16,
                   seed: int = 0) -> ActiveHead:
    """Bottom MLP n_features -> hidden -> d, own linear d -> k, top ReLU -> Linear(k, 1)."""
    head = ActiveHead(mlp(n_features, hidden, d), d, k, nn.Sequential(nn.ReLU(), nn.Linear(k, 1)))
    return seeded_(head, seed)


def default_passive(n_features: int, *, hidden: int = 32, d: int = 16, seed: int = 1) -> nn.Module:
    """Bottom MLP n_features -> hidden -> d (ReLU outputs, clipped to the HE value bound)."""
    return seeded_(mlp(n_features, hidden, d), seed)


def init_interactive(d: int, k: int, seed: int) -> FloatArray:
    """The passive party's initial interactive weights W (d × k), from its own seed."""
    return np.random.default_rng([seed, 0x5EED]).normal(0.0, 1.0 / np.sqrt(d), size=(d, k))


# -- metrics (one definition, vfl.metrics; NaN for a single-class validation set) --

def binary_metrics(y: npt.ArrayLike, prob: npt.ArrayLike) -> dict[str, float]:
    """loss (log loss), auc, ks, accuracy at 0.5."""
    yy = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-12, 1 - 1e-12)
    loss = float(-np.mean(yy * np.log(p) + (1 - yy) * np.log(1 - p)))
    return {"loss": loss, "auc": auc(yy, p), "ks": ks(yy, p),
            "accuracy": float(np.mean((p >= 0.5) == (yy >= 0.5)))}


__all__ = [
    "ActiveHead",
    "auc",
    "binary_metrics",
    "default_active",
    "default_passive",
    "init_interactive",
    "ks",
    "mlp",
    "seeded_",
]
