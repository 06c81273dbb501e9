"""A ``NumPyClient`` whose local training is DP-SGD through Opacus's ``PrivacyEngine``.

Sample-level DP: each client's own training examples are protected against anyone who
sees that client's model updates (the server, or, with ``secure_agg=True``, whoever sees
the sum). Opacus clips each example's gradient to ``max_grad_norm``, adds Gaussian noise
``N(0, (noise_multiplier·max_grad_norm)²)`` to each batch's summed gradients, and
samples batches by Poisson sampling, which its RDP accountant assumes.

Accounting across rounds is the point Flower's Opacus example misses (it builds a new
``PrivacyEngine`` each round, so the ε it prints is one round's, not the run's): here
each client keeps its accountant's history (a list of ``(noise, sample_rate, steps)``)
between rounds and hands it back to the engine, so the ε it reports after round ``r``
is the composition of all ``r`` rounds of its local DP-SGD.

Combined accounting, stated plainly: this sample-level ε is about one *example* of one
client. User-level guarantees (one whole client) come from central or distributed DP on
the server side (``hfl``'s DP strategies, ``dp.DistributedDP``); the two are different
neighbouring relations and do not add. Sample-level ε does not compose across clients
either: a client's examples are only in that client's updates.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hfl import NumPyClient
from hfl.torch_utils import get_parameters, set_parameters


class SmallCNN(nn.Module):
    """A 2-conv CNN with GroupNorm-free layers Opacus supports (26,010 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 5, stride=2, padding=2)
        self.c2 = nn.Conv2d(16, 32, 5, stride=2, padding=2)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.c1(x))
        x = torch.tanh(self.c2(x))
        return self.fc(x.flatten(1))


def _opacus() -> Any:
    try:
        import opacus
    except ImportError as e:  # pragma: no cover
        raise SystemExit("this example needs Opacus: pip install 'tessera[opacus]'") from e
    return opacus


class DPSGDClient(NumPyClient):
    """E local epochs of DP-SGD on this client's shard; ε composed over all its rounds."""

    def __init__(self, cid: int, x: torch.Tensor, y: torch.Tensor, *, noise_multiplier: float,
                 max_grad_norm: float, batch_size: int, lr: float, epochs: int,
                 delta: float) -> None:
        self.cid, self.x, self.y = cid, x, y
        self.noise_multiplier, self.max_grad_norm = noise_multiplier, max_grad_norm
        self.batch_size, self.lr, self.epochs, self.delta = batch_size, lr, epochs, delta
        torch.manual_seed(0)
        self.model = SmallCNN()
        self.history: list[tuple[float, float, int]] = []  # the accountant's, kept across rounds
        self.epsilon = 0.0

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return get_parameters(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        opacus = _opacus()
        set_parameters(self.model, parameters)
        model = SmallCNN()
        model.load_state_dict(self.model.state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(1_000_003 * int(config.get("server_round", 0)) + self.cid)
        loader = DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size,
                            generator=g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "secure RNG turned off": see the README
            engine = opacus.PrivacyEngine(accountant="rdp")
        engine.accountant.history = list(self.history)  # compose with the earlier rounds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pmodel, popt, ploader = engine.make_private(
                module=model, optimizer=opt, data_loader=loader,
                noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm)
        pmodel.train()
        total, seen = 0.0, 0
        for _ in range(self.epochs):
            for xb, yb in ploader:
                if len(yb) == 0:  # Poisson sampling can draw an empty batch
                    continue
                popt.zero_grad()
                loss = nn.functional.cross_entropy(pmodel(xb), yb)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Opacus's hooks on the input layer
                    loss.backward()
                popt.step()
                total += float(loss.detach()) * len(yb)
                seen += len(yb)
        self.history = list(engine.accountant.history)
        self.epsilon = float(engine.get_epsilon(self.delta))
        self.model.load_state_dict(pmodel._module.state_dict())
        return get_parameters(self.model), len(self.y), {
            "train_loss": total / max(seen, 1), "sample_epsilon": self.epsilon,
            "delta": self.delta}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        set_parameters(self.model, parameters)
        with torch.no_grad():
            out = self.model(self.x)
            loss = float(nn.functional.cross_entropy(out, self.y))
            acc = float((out.argmax(1) == self.y).float().mean())
        return loss, len(self.y), {"accuracy": acc}
