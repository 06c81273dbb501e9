"""One error hierarchy for everything tessera raises on purpose.

Each class says what the caller should do; each message names the peer, the tag
or the limit involved.
"""

from __future__ import annotations

from typing import Any


class TesseraError(Exception):
    """Base of every error tessera raises on purpose."""


class ConfigError(TesseraError, ValueError):
    """A federation/CLI setting is missing or invalid; the message names the field."""


class PartyTimeout(TesseraError, TimeoutError):
    """A peer sent nothing for a tag within the deadline."""

    def __init__(self, peer: str, tag: Any, timeout_s: float) -> None:
        super().__init__(f"no message from {peer!r} for tag {tag} within {timeout_s:g} s")
        self.peer = peer
        self.tag = tag
        self.timeout_s = timeout_s


class PartyUnavailable(TesseraError, ConnectionError):
    """A peer is gone, unknown, or refused the connection."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"party {peer!r} unavailable: {reason}")
        self.peer = peer
        self.reason = reason


class PeerAborted(PartyUnavailable):
    """A peer stopped its run on purpose and said why (bad input, a failed check, Ctrl-C)."""

    def __init__(self, peer: str, reason: str, session: str = "") -> None:
        where = f" session {session!r}" if session and session != "*" else ""
        super().__init__(peer, f"aborted{where}: {reason}")
        self.session = session


class ClosedTransport(TesseraError):
    """This party's transport was closed (by us, or by Ctrl-C)."""


class ProtocolError(TesseraError):
    """A protocol rule was broken (base; raise a subclass)."""


class LocalProtocolError(ProtocolError):
    """Our own code called protocol stages out of order."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something illegal."""

    def __init__(self, message: str, *, peer: str | None = None) -> None:
        super().__init__(f"{peer}: {message}" if peer else message)
        self.peer = peer


class CodecError(RemoteProtocolError):
    """A malformed, forged, truncated or oversized payload."""


class QuorumLost(TesseraError):
    """Fewer than the threshold of parties survived: the round is aborted, nothing applied."""


class AuthenticationError(TesseraError, PermissionError):
    """A peer's identity could not be established or did not match its claim."""


__all__ = [
    "AuthenticationError",
    "ClosedTransport",
    "CodecError",
    "ConfigError",
    "LocalProtocolError",
    "PartyTimeout",
    "PartyUnavailable",
    "PeerAborted",
    "ProtocolError",
    "QuorumLost",
    "RemoteProtocolError",
    "TesseraError",
]
