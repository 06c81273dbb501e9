"""The confirmed run handshake every multi-party run opens with.

Before any data flows, the parties of one run agree on who takes part (each
peer's *incarnation*, see :mod:`party.transport`), on the run's public settings,
and on one run identity, and each confirms the others saw the same transcript:

1. Each party sends every peer ``RunHello(protocol, session, parties, info,
   incarnation, nonce)``: ``info`` is the run's public settings (a dict the
   protocol chooses; a digest is compared, and on a difference the fields are
   named), ``nonce`` 32 fresh random bytes.
2. Once it has every peer's hello, it checks protocol, session, party list and
   settings agree (else :class:`RunMismatch` naming the peer and the fields) and
   computes the transcript hash: SHA-256 over every party's (name, incarnation,
   nonce, settings digest), in party order, plus any ``extra`` bytes the protocol
   binds (PSI binds its session salt). It sends ``RunConfirm(transcript)``.
3. Each checks every peer's confirm equals its own; a difference is a
   :class:`RunMismatch` naming the parties, never a run on different views.

The run id is the first 16 hex digits of the transcript: the same at every party,
new for every run (fresh nonces), so stale messages of another run can never be
mistaken for this one's when protocols put it in their tags.

Start order is free: a peer that is not connected yet gets the hello when it
connects (the sender holds it). A peer that restarts while we wait for its hello
(a new incarnation) is sent our hello again, up to the deadline.

What each party learns: the others' names, incarnations, nonces and public
settings (nothing private; settings that are secret, like a PSI salt, enter only
as a hash).

The machine (:class:`Handshake`) does no I/O; :func:`open_run` runs it over a Party.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from party.codec import Bytes, Checked, ListOf, NonNegInt, Record, Str, decode, encode, wire
from party.errors import (
    ConfigError,
    LocalProtocolError,
    PartyTimeout,
    PartyUnavailable,
    PeerAborted,
    RemoteProtocolError,
    TesseraError,
)
from party.party import Party
from party.transport import Tag

log = logging.getLogger("party.handshake")

PROTOCOL = "run"
T = TypeVar("T")


class RunMismatch(RemoteProtocolError, ConfigError):
    """The parties of a run do not agree (settings, party list or transcript); nothing ran.

    A :class:`ConfigError` too: the usual cause is a setting that differs between parties.
    """


class RunExcluded(TesseraError):
    """The hub of a dropout-tolerant run (SecAgg's server) went on without this party."""


#: The confirm a hub sends to a member it left out (late, gone or disagreeing).
LEFT_OUT = bytes(32)


Digest = Annotated[bytes, Bytes(size=32)]


@wire("party.run_hello", version=1)
@dataclass(frozen=True)
class RunHello(Checked):
    protocol: str
    session: str
    parties: Annotated[list[str], ListOf(Str())]
    info: Record
    incarnation: NonNegInt
    nonce: Digest


@wire("party.run_confirm", version=1)
@dataclass(frozen=True)
class RunConfirm(Checked):
    transcript: Digest


def info_digest(info: dict[str, Any]) -> bytes:
    """SHA-256 of the canonical encoding of ``info`` (dict keys sorted)."""
    return hashlib.sha256(encode(_canonical(info))).digest()


def _canonical(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _canonical(v[k]) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    return v


@dataclass
class Run:
    """The outcome of a confirmed handshake: the same at every party of the run."""

    protocol: str
    session: str
    parties: list[str]
    run_id: str
    transcript: bytes
    incarnations: dict[str, int]
    nonces: dict[str, bytes] = field(repr=False)
    attempts: int = 1


class Handshake:
    """Sans-I/O handshake of one party: hello out, hellos in, confirm out, confirms in."""

    def __init__(self, me: str, parties: Sequence[str], *, protocol: str, session: str,
                 info: dict[str, Any], incarnation: int, extra: bytes = b"") -> None:
        if me not in parties:
            raise LocalProtocolError(f"{me!r} is not one of the run's parties {list(parties)}")
        if len(set(parties)) != len(parties):
            raise LocalProtocolError(f"duplicate party names in {list(parties)}")
        self.me = me
        self.parties = list(parties)
        self.peers = [p for p in self.parties if p != me]
        self.protocol, self.session = protocol, session
        self.info = _canonical(info)
        self.extra = extra
        self.hello = RunHello(protocol, session, self.parties, self.info, incarnation,
                              secrets.token_bytes(32))
        self.hellos: dict[str, RunHello] = {me: self.hello}
        self.confirms: dict[str, bytes] = {}
        self._transcript: bytes | None = None

    def on_hello(self, src: str, msg: RunHello) -> None:
        if src not in self.peers:
            raise RemoteProtocolError(f"run hello from {src!r}, not a party of this run", peer=src)
        mine = self.hello
        diffs: dict[str, tuple[Any, Any]] = {}
        for f in ("protocol", "session", "parties"):
            if getattr(msg, f) != getattr(mine, f):
                diffs[f] = (getattr(mine, f), getattr(msg, f))
        if info_digest(msg.info) != info_digest(mine.info):
            keys = sorted(set(mine.info) | set(msg.info))
            for k in keys:
                if mine.info.get(k) != msg.info.get(k):
                    diffs[f"info.{k}"] = (mine.info.get(k), msg.info.get(k))
        if diffs:
            what = "; ".join(f"{k}: {self.me} has {a!r}, {src} has {b!r}" for k, (a, b) in diffs.items())
            raise RunMismatch(f"{self.me} and {src} disagree on the run ({what})", peer=src)
        self.hellos[src] = msg
        self._transcript = None

    def forget(self, src: str) -> None:
        """``src`` restarted before confirming: its old hello no longer counts."""
        self.hellos.pop(src, None)
        self.confirms.pop(src, None)
        self._transcript = None

    @property
    def have_hellos(self) -> bool:
        return all(p in self.hellos for p in self.parties)

    @property
    def transcript(self) -> bytes:
        if not self.have_hellos:
            raise LocalProtocolError("transcript before every party's hello")
        if self._transcript is None:
            h = hashlib.sha256(b"tessera run transcript v1\x00")
            h.update(encode([self.protocol, self.session, self.parties]))
            h.update(info_digest(self.info))
            for p in self.parties:
                m = self.hellos[p]
                h.update(encode([p, m.incarnation, m.nonce]))
            h.update(hashlib.sha256(self.extra).digest())
            self._transcript = h.digest()
        return self._transcript

    def confirm(self) -> RunConfirm:
        return RunConfirm(self.transcript)

    def on_confirm(self, src: str, msg: RunConfirm) -> None:
        if src not in self.peers:
            raise RemoteProtocolError(f"run confirm from {src!r}, not a party of this run", peer=src)
        if msg.transcript == LEFT_OUT:
            raise RunExcluded(f"{src} went on without {self.me} (it answered too late)")
        if msg.transcript != self.transcript:
            raise RunMismatch(
                f"run transcript of {src} differs from {self.me}'s: they saw different parties, "
                "incarnations, nonces or session secrets (e.g. a different PSI salt); nothing ran",
                peer=src)
        self.confirms[src] = msg.transcript

    @property
    def done(self) -> bool:
        return all(p in self.confirms for p in self.peers)

    def result(self, attempts: int = 1) -> Run:
        if not self.done:
            raise LocalProtocolError("handshake not done")
        t = self.transcript
        return Run(self.protocol, self.session, self.parties, t.hex()[:16], t,
                   {p: m.incarnation for p, m in self.hellos.items()},
                   {p: m.nonce for p, m in self.hellos.items()}, attempts)


def _nonce_of(data: bytearray) -> bytes | None:
    try:
        m = decode(data)
    except Exception:
        return None
    return m.nonce if isinstance(m, RunHello) else None


def open_run(
    party: Party,
    peers: Sequence[str] | None = None,
    *,
    protocol: str,
    session: str,
    info: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
    extra: bytes = b"",
    wait_for_restart: bool = True,
) -> Run:
    """Run the confirmed handshake with ``peers`` (default: all); see the module docstring.

    With ``wait_for_restart=False`` a peer that goes away before its hello is an error
    at once (an HFL client lets its reconnect loop decide instead).

    Raises:
        RunMismatch: settings, party list or transcript differ (names the peer and fields).
        PeerAborted: a peer stopped the run and said why.
        PartyTimeout: a peer did not answer within ``timeout_s``.
    """
    peers = list(party.peers if peers is None else peers)
    parties = sorted({party.name, *peers})
    t = party.transport
    party.unpin(peers)
    inc = int(getattr(t, "incarnation", 0))
    hs = Handshake(party.name, parties, protocol=protocol, session=session, info=info or {},
                   incarnation=inc, extra=extra)
    tag = Tag(PROTOCOL, session, 0, protocol)
    deadline = time.monotonic() + timeout_s
    attempts = 1
    for p in hs.peers:
        party.send(p, tag.at(f"{protocol}:hello"), hs.hello)
    pending = list(hs.peers)
    peer_inc = getattr(t, "peer_incarnation", lambda _n: None)
    wait_peer = getattr(t, "wait_peer", None)
    while pending:
        p = pending[0]
        before = peer_inc(p)
        try:
            msg = party.recv(p, tag.at(f"{protocol}:hello"),
                             timeout_s=max(0.0, deadline - time.monotonic()))
            if isinstance(msg, RunConfirm) and msg.transcript == LEFT_OUT:
                raise RunExcluded(f"{p} went on without {party.name} (it answered too late)")
            if not isinstance(msg, RunHello):
                raise RemoteProtocolError(f"expected RunHello, got {type(msg).__name__}", peer=p)
        except PeerAborted:
            raise
        except PartyUnavailable as e:
            # the peer went away (or restarted) before its hello: wait for its next incarnation
            left = deadline - time.monotonic()
            if wait_peer is None or left <= 0 or not wait_for_restart:
                raise
            log.info("%s: %s unavailable during the %s handshake (%s); waiting up to %.0f s",
                     party.name, p, protocol, e.reason, left)
            now = wait_peer(p, timeout_s=left)
            if before is not None and now == before:
                raise  # the same incarnation is unusable (not a restart): do not spin
            hs.forget(p)
            attempts += 1
            party.send(p, tag.at(f"{protocol}:hello"), hs.hello)
            continue
        hs.on_hello(p, msg)
        pending.pop(0)
    for p in hs.peers:
        party.send(p, tag.at(f"{protocol}:confirm"), hs.confirm())
    for p in hs.peers:
        hs.on_confirm(p, party.recv(p, tag.at(f"{protocol}:confirm"), RunConfirm,
                                    timeout_s=max(0.0, deadline - time.monotonic())))
    box = getattr(t, "_box", None)
    if box is not None:  # a hello we were sent twice (held, then resent after a restart)
        for p in hs.peers:
            nonce = hs.hellos[p].nonce
            box.discard_if(p, tag.at(f"{protocol}:hello"), lambda b, n=nonce: _nonce_of(b) == n)
    run = hs.result(attempts)
    party.pin(run.incarnations)
    log.info("%s: %s run %s confirmed with %s", party.name, protocol, run.run_id, ", ".join(hs.peers))
    return run


def leave_out(party: Party, member: str, *, protocol: str, session: str) -> None:
    """Tell ``member`` the hub will run ``session`` without it (it waits no longer)."""
    tag = Tag(PROTOCOL, session, 0, protocol)
    with contextlib.suppress(PartyUnavailable):
        party.send(member, tag.at(f"{protocol}:hello"), RunConfirm(LEFT_OUT))


def open_star(
    party: Party,
    members: Sequence[str],
    *,
    protocol: str,
    session: str,
    info: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Run]:
    """The hub's side of a dropout-tolerant handshake with many members (SecAgg's server).

    Each member runs :func:`open_run` with the hub alone; the hub runs the same
    two-party handshake with every member under one shared deadline and returns the
    members that confirmed (pinned), each with its own pair transcript. A member that
    is silent, gone or disagrees is left out (logged), not an error: the protocol
    treats it as a dropout.
    """
    tag = Tag(PROTOCOL, session, 0, protocol)
    inc = int(getattr(party.transport, "incarnation", 0))
    party.unpin(members)
    hss = {u: Handshake(party.name, sorted([party.name, u]), protocol=protocol, session=session,
                        info=info or {}, incarnation=inc) for u in members}
    for u, hs in hss.items():
        try:
            party.send(u, tag.at(f"{protocol}:hello"), hs.hello)
        except PartyUnavailable as e:
            log.info("%s: %s left out of %s %s: %s", party.name, u, protocol, session, e)
    deadline = time.monotonic() + timeout_s
    live: list[str] = []
    for u in members:
        try:
            hss[u].on_hello(u, party.recv(u, tag.at(f"{protocol}:hello"), RunHello,
                                          timeout_s=max(0.0, deadline - time.monotonic())))
            live.append(u)
        except (PartyTimeout, PartyUnavailable, RemoteProtocolError) as e:
            log.info("%s: %s left out of %s %s: %s", party.name, u, protocol, session, e)
    for u in members:  # the live get the confirm; the rest learn they were left out
        with contextlib.suppress(PartyUnavailable):
            party.send(u, tag.at(f"{protocol}:confirm"),
                       hss[u].confirm() if u in live else RunConfirm(LEFT_OUT))
    out: dict[str, Run] = {}
    for u in live:
        try:
            hss[u].on_confirm(u, party.recv(u, tag.at(f"{protocol}:confirm"), RunConfirm,
                                            timeout_s=max(0.0, deadline - time.monotonic())))
        except (PartyTimeout, PartyUnavailable, RemoteProtocolError) as e:
            log.info("%s: %s left out of %s %s: %s", party.name, u, protocol, session, e)
            continue
        out[u] = hss[u].result()
        party.pin({u: out[u].incarnations[u]})
    return out


def tell_peers(party: Any, session: str, e: BaseException) -> None:
    """Fail fast: the peers learn at once that this party stopped ``session``, and why.

    Best effort (the link may be what failed); a transport without aborts is skipped.
    """
    abort = getattr(getattr(party, "transport", None), "abort", None)
    if abort is None:
        return
    try:
        abort(session, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    except Exception:
        log.debug("%s: could not tell peers about %r", getattr(party, "name", "?"), e)


def run_with_rejoin(
    party: Any,
    once: Callable[[], T],
    *,
    peers: Sequence[str],
    session: str,
    rejoin_s: float,
    cause_of: Callable[[BaseException], BaseException | None] = lambda e: e,
    on_rejoin: Callable[[], None] | None = None,
    gone: Callable[[str, PartyUnavailable], BaseException] | None = None,
    tell_on_peer_abort: bool = True,
    then: str = "running again",
) -> T:
    """Run ``once()``; if a peer's process dies mid-run, wait for it to rejoin and run again.

    One window of ``rejoin_s`` seconds covers the whole call. When ``once`` fails with
    a :class:`PartyUnavailable` for one of ``peers`` (``cause_of(e)`` finds it in the
    exception: e.g. its ``__cause__``) that is not a :class:`PeerAborted`, this waits
    for the peer's new incarnation (``transport.wait_peer``), calls ``on_rejoin()``
    (put the caller's state back as before the run) and calls ``once()`` again. A
    peer that does not return within the window ends it: ``gone(peer, cause)`` is
    raised (default: ``PartyUnavailable`` naming the window). Any other failure (and,
    with ``tell_on_peer_abort``, a peer's abort) tells the peers at once
    (:func:`tell_peers`) and propagates.
    """
    deadline = time.monotonic() + rejoin_s
    while True:
        try:
            return once()
        except BaseException as e:
            cause = cause_of(e)
            if isinstance(cause, PeerAborted):
                if tell_on_peer_abort:
                    tell_peers(party, session, e)
                raise
            left = deadline - time.monotonic()
            if not isinstance(cause, PartyUnavailable) or cause.peer not in peers or left <= 0:
                tell_peers(party, session, e)
                raise
            log.warning("%s: %s is gone (%s); waiting up to %.0f s for it to rejoin, then %s",
                        party.name, cause.peer, cause.reason, left, then)
            try:
                party.transport.wait_peer(cause.peer, timeout_s=left)
            except PartyTimeout:
                if gone is None:
                    raise PartyUnavailable(cause.peer, f"did not rejoin within {rejoin_s:g} s "
                                           f"({cause.reason})") from None
                raise gone(cause.peer, cause) from cause
            if on_rejoin is not None:
                on_rejoin()


def confirm_digest(
    party: Party,
    peers: Sequence[str],
    *,
    session: str,
    step: str,
    digest: bytes,
    what: str,
    timeout_s: float,
) -> None:
    """Exchange a 32-byte digest with every peer and check they are all equal.

    For values a protocol derives after its own hello (PSI's session salt), so
    parties that would compute on different secrets stop before any data flows.
    """
    tag = Tag(PROTOCOL, session, 0, step)
    for p in peers:
        party.send(p, tag, RunConfirm(digest))
    deadline = time.monotonic() + timeout_s
    for p in peers:
        got = party.recv(p, tag, RunConfirm, timeout_s=max(0.0, deadline - time.monotonic()))
        if got.transcript != digest:
            raise RunMismatch(f"{what} of {p} differs from {party.name}'s; nothing was computed",
                              peer=p)


__all__ = [
    "Handshake",
    "Run",
    "RunConfirm",
    "RunExcluded",
    "RunHello",
    "RunMismatch",
    "confirm_digest",
    "info_digest",
    "leave_out",
    "open_run",
    "open_star",
    "run_with_rejoin",
    "tell_peers",
]
