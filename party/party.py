"""Party: a name, a role and a Transport, plus the codec and typed receive."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

from party.codec import MAX_MESSAGE_BYTES, decode, encode, encode_parts
from party.errors import (
    CodecError,
    PartyTimeout,
    PartyUnavailable,
    RemoteProtocolError,
    TesseraError,
)
from party.transport import Tag, Transport

log = logging.getLogger("party")

T = TypeVar("T")


class Role(str, enum.Enum):
    """What a party does in a federation."""

    SERVER = "server"  # HFL aggregator
    CLIENT = "client"  # HFL client
    ACTIVE = "active"  # VFL label holder (guest)
    PASSIVE = "passive"  # VFL feature holder (host)
    PARTY = "party"  # generic (PSI, FTL)
    ROUTER = "router"


class Party:
    """One organisation in a federation.

    ``send`` encodes with the safe codec; ``recv`` decodes and, given a type,
    checks the peer sent that message type (``RemoteProtocolError`` otherwise).
    """

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        role: Role | str = Role.PARTY,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if transport.name != name:
            raise ValueError(f"transport belongs to {transport.name!r}, not {name!r}")
        self.name = name
        self.role = Role(role)
        self.transport = transport
        self.max_message_bytes = max_message_bytes
        self._pins: dict[str, int] = {}

    def pin(self, incarnations: dict[str, int]) -> None:
        """Bind this party's receives to these peer incarnations (set by a confirmed handshake).

        A receive from a pinned peer whose incarnation changed since (it restarted)
        raises :class:`PartyUnavailable` instead of waiting for a message the new
        incarnation will never send in this run.
        """
        self._pins.update({p: i for p, i in incarnations.items() if p != self.name})

    def unpin(self, peers: Iterable[str]) -> None:
        """Forget the pins of ``peers`` (a new run's handshake is about to start)."""
        for p in peers:
            self._pins.pop(p, None)

    def __repr__(self) -> str:
        return f"Party({self.name!r}, role={self.role.value!r})"

    @property
    def peers(self) -> list[str]:
        return self.transport.peers

    def send(self, dst: str, tag: Tag, msg: Any) -> int:
        """Encode and send ``msg``; returns the number of payload bytes."""
        if getattr(self.transport, "accepts_parts", False):
            parts = encode_parts(msg)  # the transport frames the buffers itself: no joined copy
            self.transport.send(dst, tag, parts)  # type: ignore[arg-type]
            return sum(memoryview(p).nbytes for p in parts)
        data = encode(msg)
        self.transport.send(dst, tag, data)
        return len(data)

    @overload
    def recv(self, src: str, tag: Tag, kind: type[T], *, timeout_s: float,
             pinned: bool = True) -> T: ...
    @overload
    def recv(self, src: str, tag: Tag, kind: None = None, *, timeout_s: float,
             pinned: bool = True) -> Any: ...

    def recv(self, src: str, tag: Tag, kind: type[T] | None = None, *, timeout_s: float,
             pinned: bool = True) -> Any:
        """Receive and decode the next message from ``src`` for ``tag``.

        ``pinned=False`` skips the incarnation pin (a server reading a restarted
        client's new hello).
        """
        pin = self._pins.get(src) if pinned else None
        if pin is not None:
            now = getattr(self.transport, "peer_incarnation", lambda _s: pin)(src)
            if now is not None and now != pin:
                raise PartyUnavailable(src, f"restarted since this run began (awaiting {tag})")
        data = self.transport.recv(src, tag, timeout_s=timeout_s)
        try:
            msg = decode(data, max_bytes=self.max_message_bytes)
        except CodecError as e:
            raise CodecError(f"from {src!r} for {tag}: {e}", peer=src) from None
        if kind is not None and not isinstance(msg, kind):
            raise RemoteProtocolError(
                f"expected {kind.__name__} for {tag}, got {type(msg).__name__}", peer=src
            )
        return msg

    def broadcast(self, dsts: Iterable[str], tag: Tag, msg: Any) -> None:
        """Send the same message to each of ``dsts`` (encoded once)."""
        data = encode(msg)
        for d in dsts:
            self.transport.send(d, tag, data)

    def collect(
        self,
        srcs: Iterable[str],
        tag: Tag | Callable[[str], Tag],
        kind: type[T] | None = None,
        *,
        timeout_s: float,
        catch: tuple[type[TesseraError], ...] = (PartyTimeout, PartyUnavailable),
    ) -> Iterator[tuple[str, Any, TesseraError | None]]:
        """Receive one message from each of ``srcs`` in turn, all within one shared deadline.

        Yields ``(src, message, None)``, or ``(src, None, error)`` for a source whose
        receive raised one of ``catch`` (the others propagate). ``tag`` may be one tag or
        a function of the source (a tag per source). A source that answers late only
        shortens what is left for the rest: the whole collection ends ``timeout_s``
        after it began, and sources still unread by then get their queued message or a
        timeout at once. The loop of :meth:`gather`, SecAgg's stages and the HFL
        server's rounds.
        """
        deadline = time.monotonic() + timeout_s
        for s in srcs:
            t = tag(s) if callable(tag) else tag
            try:
                msg = self.recv(s, t, kind, timeout_s=max(0.0, deadline - time.monotonic()))
            except catch as e:
                yield s, None, e
                continue
            yield s, msg, None

    def gather(
        self,
        srcs: Iterable[str],
        tag: Tag,
        kind: type[T] | None = None,
        *,
        timeout_s: float,
        min_count: int | None = None,
    ) -> dict[str, Any]:
        """Receive one message from each of ``srcs`` within one shared deadline.

        With ``min_count=None`` every source must answer (else the first
        PartyTimeout/PartyUnavailable propagates). With ``min_count=k`` sources
        that time out or vanish are left out, and ``PartyTimeout`` is raised only
        if fewer than ``k`` answered — the dropout-tolerant form used by SecAgg.
        """
        srcs = list(srcs)
        out: dict[str, Any] = {}
        for s, msg, err in self.collect(srcs, tag, kind, timeout_s=timeout_s):
            if err is None:
                out[s] = msg
            elif min_count is None:
                raise err
            else:
                log.info("%s: %s dropped out at %s (%s)", self.name, s, tag, err)
        if min_count is not None and len(out) < min_count:
            missing = [s for s in srcs if s not in out]
            raise PartyTimeout(
                f"{len(missing)} of {len(srcs)} parties ({', '.join(missing[:5])}...)",
                tag,
                timeout_s,
            )
        return out

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Party:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
