"""The driver's records of virtual clients and their jobs, and the in-memory transports
that divert the server's instructions to the actor pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from party import Tag
from party.transport import TransportStats


@dataclass
class _Session:
    """A virtual client as the driver knows it: its in-memory transport and session id."""

    name: str
    index: int
    transport: Any
    incarnation: str
    dead: bool = False


@dataclass
class _Job:
    client: str
    tag: Tag
    ref: Any
    secure: bool
    deadline: float
    incarnation: str


@dataclass
class _Running:
    job: _Job
    session: _Session
    ref: Any
    gen: int
    token: int
    actor: Any = None
    job_id: int = 0
    abandoned: bool = False  # revoked at its actor and handed to another lane
    started: bool = False  # its actor said it had started it: it stays


class _Fast:
    """An in-memory transport with a fixed list of peers.

    ``InMemoryTransport.peers`` lists every party afresh, O(N) per call; a virtual client
    talks to the server only, and the server's list is built once. Everything else is the
    wrapped transport's.
    """

    def __init__(self, inner: Any, peers: list[str]) -> None:
        self._inner = inner
        self._peers = peers

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def peers(self) -> list[str]:
        return list(self._peers)

    @property
    def stats(self) -> TransportStats:
        return self._inner.stats  # type: ignore[no-any-return]

    @property
    def incarnation(self) -> int:
        return int(self._inner.incarnation)

    def send(self, dst: str, tag: Tag, payload: bytes | bytearray) -> None:
        self._inner.send(dst, tag, payload)

    def recv(self, src: str, tag: Tag, *, timeout_s: float) -> bytearray:
        return self._inner.recv(src, tag, timeout_s=timeout_s)  # type: ignore[no-any-return]
