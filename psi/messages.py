"""Wire messages of the PSI protocol (registered with the safe codec; never pickled).

Every field has a codec type (``party.codec``): checked on decode (a malformed message
is a ``CodecError`` naming the field) and, the classes being :class:`party.codec.Checked`,
when a message is built locally (a ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from party.codec import Bytes, Checked, Flag, ListOf, NonNegInt, Record, Str, wire
from psi.ristretto import POINT_BYTES

NONCE_BYTES = 32
#: Bytes of one unbalanced-PSI tag (the truncated OPRF output, :mod:`psi.unbalanced`).
TAG_BYTES = 16
Digest = Annotated[bytes, Bytes(size=32)]


@wire("psi.hello", version=1)
@dataclass(frozen=True)
class Hello(Checked):
    """First message to every peer: the public config, this party's set size and a fresh nonce."""

    config: Record
    n_items: NonNegInt
    nonce: Annotated[bytes, Bytes(size=NONCE_BYTES)]
    #: SHA-256 of a checkpointed session's nonces, or empty
    resume: Annotated[bytes, Bytes(sizes=(0, 32))] = b""
    #: checkpointed streams (step names, see psi.checkpoint)
    have: Annotated[list[str], ListOf(Str(max_len=255), max_len=4096)] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk(Checked):
    """One chunk of a stream of ``UNIT``-byte items: its index, whether it is the last, the
    items packed; a subclass names ``UNIT`` and checks ``data`` against it."""

    UNIT: ClassVar[int]

    index: NonNegInt
    last: Flag
    data: bytes

    @property
    def count(self) -> int:
        return len(self.data) // self.UNIT


@wire("psi.points", version=1)
@dataclass(frozen=True)
class Points(Chunk):
    """One chunk of a stream of packed 32-byte group elements."""

    UNIT = POINT_BYTES
    data: Annotated[bytes, Bytes(multiple_of=POINT_BYTES)]


@wire("psi.count", version=1)
@dataclass(frozen=True)
class Count(Checked):
    """The intersection size (cardinality mode)."""

    size: NonNegInt


@wire("psi.tags", version=1)
@dataclass(frozen=True)
class Tags(Chunk):
    """One chunk of a stream of 16-byte OPRF tags (:mod:`psi.unbalanced`)."""

    UNIT = TAG_BYTES
    data: Annotated[bytes, Bytes(multiple_of=TAG_BYTES)]


@wire("psi.ub_offer", version=1)
@dataclass(frozen=True)
class UbOffer(Checked):
    """The server's announcement of a new unbalanced-PSI cache: its id and its size."""

    cache_id: Digest
    n_items: NonNegInt


__all__ = ["TAG_BYTES", "Count", "Hello", "Points", "Tags", "UbOffer"]
