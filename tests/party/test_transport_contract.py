"""The delivery contract, checked by ``party.conformance.check_transport``'s checks, over every transport.

Each transport is a federation maker (``inmemory_parties``, ``grpc_parties``), not a string: a
new transport adds one maker here. ``check_transport`` also runs the whole suite over the
in-memory transport behind a (delaying) ``FaultyTransport``. The kit itself must fail a transport that breaks the contract (the last tests).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from party import Tag
from party.conformance import (
    CHECKS,
    ContractViolation,
    Federation,
    check_dead_peer_fails_fast,
    check_no_duplicates,
    check_order_and_buffering,
    check_transport,
    grpc_parties,
    inmemory_parties,
    with_faults,
)
from party.testing import FaultyTransport

FEDERATIONS = [
    pytest.param(inmemory_parties, id="inmemory"),
    pytest.param(grpc_parties, id="grpc", marks=pytest.mark.grpc),
]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
@pytest.mark.parametrize("make", FEDERATIONS)
def test_contract(make: Federation, check: Callable[[Federation], None]) -> None:
    check(make)


def test_check_transport_runs_every_check_on_a_delaying_transport() -> None:
    """Delays keep the contract (order kept); the whole suite passes through ``check_transport``."""
    check_transport(with_faults(inmemory_parties, lambda name, ft: ft.delay(0.001)))


def test_the_kit_catches_a_transport_that_duplicates() -> None:
    dup = with_faults(inmemory_parties, lambda name, ft: ft.duplicate(protocol="once", count=1))
    with pytest.raises(ContractViolation, match=r"check_no_duplicates: .*delivered twice"):
        check_transport(dup, checks=[check_no_duplicates])


def test_the_kit_catches_a_transport_that_loses_or_reorders() -> None:
    lossy = with_faults(inmemory_parties, lambda name, ft: ft.drop(step="odd", count=1))
    with pytest.raises(ContractViolation, match=r"1 of 2 contract checks failed: "
                                                r"check_order_and_buffering: Party(Timeout|Unavailable)"):
        check_transport(lossy, checks=[check_order_and_buffering, check_no_duplicates])


def test_the_kit_catches_a_peer_death_that_is_not_reported() -> None:
    """A transport whose close does not reach the peer: the waiter only sees its timeout."""

    def silent_close(name: str, ft: FaultyTransport) -> None:
        ft.close = lambda: None  # type: ignore[method-assign]

    mute = with_faults(inmemory_parties, silent_close)
    with pytest.raises(ContractViolation, match="check_dead_peer_fails_fast"):
        check_transport(mute, checks=[check_dead_peer_fails_fast])


def test_faulty_transport_faults_hit_only_what_they_match() -> None:
    from party import InMemoryNetwork, Party

    net = InMemoryNetwork(["a", "b"])
    ft = FaultyTransport(net.transport("a"))
    a, b = Party("a", ft), Party("b", net.transport("b"))
    ft.drop(step="x")                    # the first "x" only
    ft.duplicate(step="y", count=None)   # every "y"
    ft.corrupt(round=7)
    for i in range(2):
        a.send("b", Tag("p", "s", 0, "x"), i)
        a.send("b", Tag("p", "s", 0, "y"), i)
    a.send("b", Tag("p", "s", 7, "z"), "abc")
    assert b.recv("a", Tag("p", "s", 0, "x"), timeout_s=1) == 1
    assert [b.recv("a", Tag("p", "s", 0, "y"), timeout_s=1) for _ in range(4)] == [0, 0, 1, 1]
    from party.errors import CodecError

    with pytest.raises(CodecError, match="from 'a'"):
        b.recv("a", Tag("p", "s", 7, "z"), timeout_s=1)
    assert [k for k, _, _ in ft.applied] == ["drop", "duplicate", "duplicate", "corrupt"]


def test_faulty_transport_reset_is_a_crash_the_peer_sees_at_once() -> None:
    import time

    from party import ClosedTransport, InMemoryNetwork, Party, PartyUnavailable

    net = InMemoryNetwork(["a", "b"])
    ft = FaultyTransport(net.transport("a"))
    a, b = Party("a", ft), Party("b", net.transport("b"))
    ft.reset_after(2)
    a.send("b", Tag("t"), 1)
    a.send("b", Tag("t"), 2)  # the link dies after this one
    assert [b.recv("a", Tag("t"), timeout_s=1) for _ in range(2)] == [1, 2]
    t = time.monotonic()
    with pytest.raises(PartyUnavailable, match="'a'"):
        b.recv("a", Tag("t"), timeout_s=10)
    assert time.monotonic() - t < 2
    with pytest.raises(ClosedTransport):
        a.send("b", Tag("t"), 3)


def test_collect_shares_one_deadline_and_reports_each_source() -> None:
    """Party.collect: the loop under gather, SecAgg's stages and the HFL rounds."""
    import threading
    import time

    from party import InMemoryNetwork, Party, PartyTimeout, RemoteProtocolError

    net = InMemoryNetwork(["hub", "a", "b", "c"])
    hub = Party("hub", net.transport("hub"))
    a, b = Party("a", net.transport("a")), Party("b", net.transport("b"))
    threading.Timer(0.4, lambda: a.send("hub", Tag("q", "s", 0, "for-a"), 1)).start()
    b.send("hub", Tag("q", "s", 0, "for-b"), "not an int")
    t = time.monotonic()
    got = list(hub.collect(["a", "c", "b"], lambda s: Tag("q", "s", 0, f"for-{s}"), int,
                           timeout_s=0.8, catch=(PartyTimeout, RemoteProtocolError)))
    elapsed = time.monotonic() - t
    assert [(s, m) for s, m, _ in got] == [("a", 1), ("c", None), ("b", None)]
    assert got[0][2] is None and isinstance(got[1][2], PartyTimeout)
    assert isinstance(got[2][2], RemoteProtocolError) and "expected int" in str(got[2][2])
    assert 0.7 < elapsed < 1.5  # one 0.8 s deadline for all three, not 0.8 s each
    with pytest.raises(RemoteProtocolError):  # not caught unless asked
        b.send("hub", Tag("r"), "x")
        list(hub.collect(["b"], Tag("r"), int, timeout_s=1))
