"""Flower's ``ServerConfig`` (``flwr.server.ServerConfig``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerConfig:
    """Flower's ``ServerConfig``: rounds, and the per-round timeout in seconds (None: 1 h)."""

    num_rounds: int = 1
    round_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.num_rounds < 0:
            raise ValueError(f"num_rounds must be >= 0, got {self.num_rounds}")
        if self.round_timeout is not None and self.round_timeout <= 0:
            raise ValueError(f"round_timeout must be > 0, got {self.round_timeout}")
