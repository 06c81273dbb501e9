"""Runners: move the SecAgg state machines' messages over a :class:`party.Party`.

They only send, receive, apply the per-stage deadlines and decide who dropped;
all cryptography and every check live in :mod:`secure_agg.client` and
:mod:`secure_agg.server`. They work over any Transport (in memory or gRPC).

Tags: ``Tag("secagg", session, round, step)`` with steps ``advertise_keys``,
``public_keys``, ``share_keys``, ``forwarded_shares``, ``masked_input``,
``unmask_request``, ``unmask_shares``, ``finished``. A message of another round or
session sits in another slot and is never read by this round.

The server collects each stage with one shared deadline (``party.gather(...,
min_count=...)`` semantics): a client that is silent past the deadline, has
disconnected, or sent something invalid is a dropout. Clients the round goes on
without get an :class:`Excluded` notice; when fewer than the threshold remain,
every remaining client gets :class:`Abort` and the server raises ``QuorumLost``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import numpy as np
import numpy.typing as npt

from party.errors import (
    PartyTimeout,
    PartyUnavailable,
    QuorumLost,
    RemoteProtocolError,
)
from party.handshake import RunExcluded, leave_out, open_run, open_star
from party.party import Party
from party.transport import Tag
from secure_agg.client import SecAggClient
from secure_agg.messages import (
    Abort,
    AdvertiseKeys,
    EncryptedShares,
    Excluded,
    Finished,
    ForwardedShares,
    MaskedInput,
    PublicKeys,
    UnmaskRequest,
    UnmaskShares,
)
from secure_agg.params import SecAggParams
from secure_agg.quantize import check_weight
from secure_agg.server import SecAggResult, SecAggServer

if TYPE_CHECKING:
    from typing import Required, Unpack  # Python 3.11+

log = logging.getLogger("secure_agg")
T = TypeVar("T")
PROTOCOL = "secagg"


@dataclass(frozen=True)
class ClientOutcome:
    """How a client's round ended (an aborted round raises QuorumLost instead)."""

    completed: bool  # True: the input is in the sum
    num_survivors: int = 0
    reason: str = ""


def handshake_session(session: str, round: int) -> str:
    """The ``party.handshake`` session name of one round's confirmed handshake."""
    return f"{session}.r{round}"


_hs_session = handshake_session  # the old private name (hfl.secure used it)


def _hs_info(params: SecAggParams) -> dict[str, Any]:
    """What the parties of a round must agree on (every parameter, as text)."""
    return {"params": repr(params)}


def round_tag(session: str, round: int, step: str = "") -> Tag:
    """The tag of one round's message ``step`` (one of :data:`STEPS`)."""
    return Tag(PROTOCOL, session, round, step)


#: The steps of a round, in order (the tags' ``step``); the first the server sends is
#: ``public_keys``, where a client looks first once its handshake is done.
STEPS = ("advertise_keys", "public_keys", "share_keys", "forwarded_shares", "masked_input",
         "unmask_request", "unmask_shares", "finished")


def _tag(session: str, round: int) -> Tag:
    return round_tag(session, round)


def release_client(party: Party, client: str, *, session: str, round: int = 0,
                   reason: str) -> None:
    """Tell ``client`` that round ``(session, round)`` goes on without it, wherever it waits.

    For a server that will not run (or not include) a client in a round: the round's
    handshake leaves it out (``party.handshake.leave_out``), and an :class:`Abort` waits
    at the round's first server step for a client already past the handshake, so it
    stops waiting at once (``run_client`` raises ``QuorumLost`` or returns not completed).
    """
    leave_out(party, client, protocol=PROTOCOL, session=handshake_session(session, round))
    _notify(party, client, round_tag(session, round, "public_keys"), Abort(session, round, reason))


# ---- client ---------------------------------------------------------------------------


def run_client(
    party: Party,
    server: str,
    x: npt.ArrayLike,
    *,
    weight: float = 1,
    params: SecAggParams,
    session: str,
    round: int = 0,
    timeout_s: float | None = None,
) -> ClientOutcome:
    """Contribute ``weight * x`` to one secure aggregation round.

    Args:
        party: this client.
        server: the aggregator's party name.
        x: flat float vector of length ``params.vector_length``.
        weight: integer weight (e.g. number of examples), at most ``params.max_weight``.
        params: the round's parameters (same as the server's).
        session: the run's id; with ``round`` it makes every key and seed unique.
        round: round number.
        timeout_s: how long to wait for each server message (default 3·params.timeout_s).

    Returns:
        ``ClientOutcome(completed=True, ...)`` when the round finished with this
        input in the sum; ``completed=False`` when the server went on without it.

    Raises:
        QuorumLost: the server aborted the round.
        ClientAborted, ShareDecryptionError: the server's messages were contradictory
            or tampered with; the client quit without revealing anything more.
        PartyTimeout, PartyUnavailable: the server stopped answering.
        ValueError: ``x`` or ``weight`` does not fit ``params``.
    """
    sm = SecAggClient(party.name, params=params, session=session, round=round,
                      clock=time.perf_counter)
    wait = timeout_s if timeout_s is not None else 3 * params.timeout_s
    tag = _tag(session, round)
    # Refuse a wrong-sized input before anyone relies on this client.
    shape = np.shape(x)
    if shape != (params.vector_length,):
        raise ValueError(f"input vector must have shape ({params.vector_length},), got {shape}")
    check_weight(weight, params)
    # `awaited` is the step the server waits on from us; a failure is reported there.
    awaited = "advertise_keys"
    # the round's confirmed handshake (party.handshake): live incarnations, the same params
    try:
        open_run(party, [server], protocol=PROTOCOL, session=_hs_session(session, round),
                 info=_hs_info(params), timeout_s=wait)
    except RunExcluded as e:  # too late for this round: like Excluded, nothing was revealed
        return ClientOutcome(False, reason=str(e))
    # (what the server sends, its type, what we answer, how): the stages after advertise_keys
    stages: list[tuple[str, type[Any], str, Callable[[Any], Any]]] = [
        ("public_keys", PublicKeys, "share_keys", sm.share_keys),
        ("forwarded_shares", ForwardedShares, "masked_input",
         lambda fwd: sm.masked_input(fwd, x, weight=weight)),
        ("unmask_request", UnmaskRequest, "unmask_shares", sm.unmask),
        ("finished", Finished, "", lambda fin: fin),
    ]
    try:
        party.send(server, tag.at("advertise_keys"), sm.advertise_keys())
        for inbox, kind, outbox, answer in stages:
            awaited = outbox
            msg = _await(party, server, tag.at(inbox), kind, wait, sm)
            if isinstance(msg, Excluded):  # the round goes on without us
                return ClientOutcome(False, reason=msg.reason)
            out = answer(msg)
            if outbox:
                party.send(server, tag.at(outbox), out)
        return ClientOutcome(True, num_survivors=out.num_survivors)
    except RemoteProtocolError as e:
        # Tell the server at once instead of letting it wait for the deadline.
        if awaited:
            _notify(party, server, tag.at(awaited), Abort(session, round, str(e)))
        raise


def _await(
    party: Party, server: str, tag: Tag, kind: type[T], wait: float, sm: SecAggClient
) -> T | Excluded:
    try:
        msg = party.recv(server, tag, timeout_s=wait)
    except (PartyTimeout, PartyUnavailable):
        sm.abort()
        raise
    if isinstance(msg, Abort):
        sm.abort()
        raise QuorumLost(f"server aborted secagg round {tag.session}/{tag.round}: {msg.reason}")
    if isinstance(msg, Excluded):
        sm.abort()
        return msg
    if not isinstance(msg, kind):
        sm.abort()
        raise RemoteProtocolError(
            f"expected {kind.__name__} for {tag}, got {type(msg).__name__}", peer=server
        )
    return msg


# ---- server ---------------------------------------------------------------------------


def run_server(
    party: Party,
    clients: Sequence[str],
    *,
    params: SecAggParams,
    session: str,
    round: int = 0,
    timeout_s: float | None = None,
    graph_seed: bytes | None = None,
) -> SecAggResult:
    """Aggregate one round: return Σ w_u x_u and Σ w_u over the surviving clients.

    Args:
        party: the aggregator.
        clients: the cohort's party names (at most ``params.num_clients``).
        params: the round's parameters (same as the clients').
        session: the run's id; never reuse a (session, round) pair.
        round: round number.
        timeout_s: deadline of each stage (default ``params.timeout_s``).
        graph_seed: SecAgg+ graph seed (random by default; tests fix it).

    Returns:
        :class:`SecAggResult` with ``sum`` (float64), ``total_weight``, ``mean``,
        ``survivors`` and ``dropped`` (client -> stage).

    Raises:
        QuorumLost: fewer than the threshold remained at some stage; the clients
            were told, and nothing is returned.
    """
    srv = SecAggServer(clients, params=params, session=session, round=round, graph_seed=graph_seed,
                       clock=time.perf_counter)
    wait = timeout_s if timeout_s is not None else params.timeout_s
    tag = _tag(session, round)
    steps: list[tuple[str, type[Any], str]] = [
        ("advertise_keys", AdvertiseKeys, "public_keys"),
        ("share_keys", EncryptedShares, "forwarded_shares"),
        ("masked_input", MaskedInput, "unmask_request"),
        ("unmask_shares", UnmaskShares, "finished"),
    ]
    stage_fns: list[Callable[[Any], Any]] = [
        srv.advertise_keys, srv.share_keys, srv.masked_input, srv.unmask
    ]
    # the round opens with a confirmed handshake with every client that answers in time;
    # the others are dropouts at advertise_keys (no second wait for them)
    confirmed = open_star(party, list(clients), protocol=PROTOCOL,
                          session=_hs_session(session, round), info=_hs_info(params),
                          timeout_s=wait)
    out: Any = None
    for (inbox, kind, outbox), fn in zip(steps, stage_fns, strict=True):
        expected = srv.alive if inbox != "advertise_keys" else [
            u for u in srv.alive if u in confirmed]
        # Masked vectors are added to the running sum as they arrive (O(d) memory).
        stream = srv.add_masked_input if inbox == "masked_input" else None
        got = _collect(party, expected, tag.at(inbox), kind, wait, srv, stream)
        try:
            out = fn(got)
        except QuorumLost as e:
            for u in expected:
                _notify(party, u, tag.at(outbox), Abort(session, round, str(e)))
            raise
        except RemoteProtocolError as e:
            for u in expected:
                _notify(party, u, tag.at(outbox), Abort(session, round, f"server gave up: {e}"))
            raise
        if isinstance(out, SecAggResult):
            fin = Finished(session, round, len(out.survivors))
            for u in expected:
                _notify(party, u, tag.at(outbox), fin)
            return out
        for u in expected:
            if u in out:
                _notify(party, u, tag.at(outbox), out[u])
            else:
                why = srv.rejected.get(u, f"no valid message before the {inbox} deadline")
                _notify(party, u, tag.at(outbox), Excluded(session, round, why))
    raise AssertionError("unreachable")  # pragma: no cover


class RoundOptions(TypedDict, total=False):
    """The keyword arguments of :func:`run_server` that :func:`secure_sum` passes on (see
    :func:`run_server` for what each does and its defaults)."""

    params: Required[SecAggParams]
    session: Required[str]
    round: int
    timeout_s: float | None


def secure_sum(party: Party, clients: Sequence[str], **options: Unpack[RoundOptions]
               ) -> tuple[np.ndarray, float]:
    """One call for the aggregator: (Σ w_u x_u as float64, Σ w_u) over the survivors."""
    res = run_server(party, clients, **options)
    return res.sum, res.total_weight


def _collect(
    party: Party,
    srcs: Sequence[str],
    tag: Tag,
    kind: type[T],
    timeout_s: float,
    srv: SecAggServer,
    stream: Callable[[str, Any], Any] | None = None,
) -> Mapping[str, T]:
    out: dict[str, T] = {}
    for s, msg, err in party.collect(srcs, tag, timeout_s=timeout_s,
                                     catch=(PartyTimeout, PartyUnavailable, RemoteProtocolError)):
        if isinstance(err, RemoteProtocolError):  # malformed payload: a dropout with a reason
            srv.reject(s, tag.step, str(err))
            continue
        if err is not None:
            log.info("secagg %s: %s dropped out at %s (%s)", tag.session, s, tag.step, err)
            continue
        if isinstance(msg, Abort):
            srv.reject(s, tag.step, f"client aborted: {msg.reason}")
        elif not isinstance(msg, kind):
            srv.reject(s, tag.step, f"sent {type(msg).__name__}, expected {kind.__name__}")
        elif stream is not None:
            stream(s, msg)
        else:
            out[s] = msg
    return out


def _notify(party: Party, dst: str, tag: Tag, msg: Any) -> None:
    try:
        party.send(dst, tag, msg)
    except PartyUnavailable:
        log.info("secagg %s: %s is gone; not told %s", tag.session, dst, type(msg).__name__)
