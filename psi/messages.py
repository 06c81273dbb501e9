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


def _check_chunk(index: Any, last: Any, data: Any, unit: int) -> None:
    """The fields of one chunk of a stream of ``unit``-byte items (ValueError if malformed)."""
    if not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, not {index!r}")
    if not isinstance(last, bool):
        raise ValueError("last must be a bool")
    if not isinstance(data, bytes) or len(data) % unit:
        raise ValueError(f"data must be bytes, a multiple of {unit} long")


@wire("psi.points", version=1)
@dataclass(frozen=True)
class Points:
    """One chunk of a stream of packed 32-byte group elements."""

    index: int
    last: bool
    data: bytes

    def __post_init__(self) -> None:
        _check_chunk(self.index, self.last, self.data, POINT_BYTES)

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


#: Bytes of one unbalanced-PSI tag (the truncated OPRF output, :mod:`psi.unbalanced`).
TAG_BYTES = 16


@wire("psi.tags", version=1)
@dataclass(frozen=True)
class Tags:
    """One chunk of a stream of 16-byte OPRF tags (:mod:`psi.unbalanced`)."""

    index: int
    last: bool
    data: bytes

    def __post_init__(self) -> None:
        _check_chunk(self.index, self.last, self.data, TAG_BYTES)

    @property
    def count(self) -> int:
        return len(self.data) // TAG_BYTES


@wire("psi.ub_offer", version=1)
@dataclass(frozen=True)
class UbOffer:
    """The server's announcement of a new unbalanced-PSI cache: its id and its size."""

    cache_id: bytes
    n_items: int

    def __post_init__(self) -> None:
        if not isinstance(self.cache_id, bytes) or len(self.cache_id) != 32:
            raise ValueError("cache_id must be 32 bytes")
        if not isinstance(self.n_items, int) or self.n_items < 0:
            raise ValueError(f"n_items must be a non-negative int, not {self.n_items!r}")


__all__ = ["TAG_BYTES", "Count", "Hello", "Points", "Tags", "UbOffer"]
