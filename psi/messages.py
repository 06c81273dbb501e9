"""Wire messages of the PSI protocol (registered with the safe codec; never pickled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from party.codec import wire
from psi.ristretto import POINT_BYTES

NONCE_BYTES = 32


@wire("psi.hello", version=1)
@dataclass(frozen=True)
class Hello:
    """First message to every peer: the public config, this party's set size and a fresh nonce."""

    config: dict[str, Any]
    n_items: int
    nonce: bytes
    resume: bytes = b""  # SHA-256 of a checkpointed session's nonces, or empty
    have: list[str] = field(default_factory=list)  # checkpointed streams (see psi.checkpoint)

    def __post_init__(self) -> None:
        if not isinstance(self.resume, bytes) or len(self.resume) not in (0, 32):
            raise ValueError("resume must be empty or 32 bytes")
        if not isinstance(self.have, list) or not all(
            isinstance(h, str) and len(h) < 256 for h in self.have
        ) or len(self.have) > 4096:
            raise ValueError("have must be a short list of step names")
        if not isinstance(self.config, dict):
            raise ValueError("config must be a dict")
        if not isinstance(self.n_items, int) or self.n_items < 0:
            raise ValueError(f"n_items must be a non-negative int, not {self.n_items!r}")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")


@wire("psi.points", version=1)
@dataclass(frozen=True)
class Points:
    """One chunk of a stream of packed 32-byte group elements."""

    index: int
    last: bool
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"index must be a non-negative int, not {self.index!r}")
        if not isinstance(self.last, bool):
            raise ValueError("last must be a bool")
        if not isinstance(self.data, bytes) or len(self.data) % POINT_BYTES:
            raise ValueError(f"data must be bytes, a multiple of {POINT_BYTES} long")

    @property
    def count(self) -> int:
        return len(self.data) // POINT_BYTES


@wire("psi.count", version=1)
@dataclass(frozen=True)
class Count:
    """The intersection size (cardinality mode)."""

    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"size must be a non-negative int, not {self.size!r}")


__all__ = ["Count", "Hello", "Points"]
