"""The torch building blocks of an FTL party: its representation network and its optimiser.

``RepresentationNet`` is ``u = W·[f(x), 1]`` (``ftl.model`` explains the notation);
``Adam`` is written out so that a party process need not import ``torch.optim``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from party.errors import ConfigError


class Adam:
    """Adam (Kingma & Ba) on a list of tensors.

    Written out so that importing ``torch.optim`` (which pulls in ``torch._dynamo``,
    ~10 s on a small machine) is not needed by every party process.
    """

    def __init__(self, params: list[torch.Tensor], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = params
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        #: with a total, step t (0-based) uses lr·(1 − t/total): linear decay towards 0
        self.total_steps: int | None = None
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr = self.lr
        if self.total_steps:
            lr = self.lr * max(0.0, 1.0 - self.t / self.total_steps)
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))

    def state_dict(self) -> dict[str, object]:
        return {"t": self.t, "m": [x.clone() for x in self.m], "v": [x.clone() for x in self.v]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        m, v, t = state["m"], state["v"], state["t"]
        if not (isinstance(m, list) and isinstance(v, list) and isinstance(t, int)
                and len(m) == len(self.m) == len(v)):
            raise ConfigError("optimiser state does not match the model")
        for dst, src in zip([*self.m, *self.v], [*m, *v], strict=True):
            if not isinstance(src, torch.Tensor) or src.shape != dst.shape:
                raise ConfigError("optimiser state does not match the model")
            dst.copy_(src)
        self.t = t


class RepresentationNet(nn.Module):
    """``u = W·[f(x), 1]``: a bottom ``f`` (Linear+Tanh per hidden width) and a linear top."""

    def __init__(self, n_features: int, hidden: tuple[int, ...], dim: int, *,
                 seed: int, train_bottom: bool = True) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            lin = nn.Linear(width, h, dtype=torch.float64)
            _init(lin, gen)
            layers += [lin, nn.Tanh()]
            width = h
        self.bottom = nn.Sequential(*layers)
        self.top = nn.Linear(width, dim, dtype=torch.float64)
        _init(self.top, gen)
        if not train_bottom:
            for p in self.bottom.parameters():
                p.requires_grad_(False)
        self.n_features = n_features
        self.width = width + 1  # K: activations plus the constant 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations ``[f(x), 1]`` (with graph): (rows, K)."""
        h = self.bottom(x)
        return torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype)], dim=1)

    def weight(self) -> torch.Tensor:
        """The representation layer as one (d, K) matrix ``[W, bias]``."""
        return torch.cat([self.top.weight, self.top.bias[:, None]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.weight().T


def _init(lin: nn.Linear, gen: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(lin.in_features)
    with torch.no_grad():
        lin.weight.copy_(torch.rand(lin.weight.shape, generator=gen, dtype=torch.float64) * 2 * bound - bound)
        lin.bias.copy_(torch.rand(lin.bias.shape, generator=gen, dtype=torch.float64) * 2 * bound - bound)


__all__ = ["Adam", "RepresentationNet"]
