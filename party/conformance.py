"""The Transport conformance suite: one function any transport can be checked with.

Built on :mod:`party.testing` (its thread runner and gRPC federation); imported from here,
not from ``party.testing``, so the two never import each other.

Like trio's ``check_one_way_stream(maker)``: give :func:`check_transport` a
*federation maker* and it runs every check of the contract in
:mod:`party.transport` against it, raising :class:`ContractViolation` naming each
check that failed. A federation maker is any callable that, given the party
names, returns a context manager yielding ``make_party(name) -> Party`` (each call
a connected party; closing one is that party leaving)::

    from party.conformance import check_transport, grpc_parties, inmemory_parties

    check_transport(inmemory_parties)
    check_transport(grpc_parties)
    check_transport(my_new_transport_parties)     # a new transport: write this maker

:data:`CHECKS` lists the checks, one function each (``check(make) -> None``), so a
test suite can parametrise over them (``tests/party/test_transport_contract.py``).
A new transport goes in ``party/`` beside ``inmemory.py`` and ``grpc_transport.py``
and passes this suite before anything is built on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from party.errors import ClosedTransport, PartyTimeout, PartyUnavailable
from party.faulty import FaultyTransport
from party.inmemory import InMemoryNetwork
from party.party import Party
from party.transport import Tag

MakeParty = Callable[[str], Party]
#: names -> a context manager yielding make_party
Federation = Callable[[Sequence[str]], AbstractContextManager[MakeParty]]


class ContractViolation(AssertionError):
    """A transport broke the delivery contract; the message names each failed check."""


# -- federation makers ------------------------------------------------------------------------
@contextlib.contextmanager
def inmemory_parties(names: Sequence[str]) -> Iterator[MakeParty]:
    """Parties of one fresh :class:`InMemoryNetwork`."""
    net = InMemoryNetwork(list(names))
    yield lambda n: Party(n, net.transport(n))


@contextlib.contextmanager
def grpc_parties(names: Sequence[str]) -> Iterator[MakeParty]:
    """Parties connected through a real router on 127.0.0.1 with mutual TLS (fresh certs)."""
    from party.grpc_transport import connect
    from party.testing import grpc_federation

    with grpc_federation(list(names)) as (config, _router):
        yield lambda n: connect(config, n)


def with_faults(make: Federation,
                arm: Callable[[str, FaultyTransport], object] | None = None) -> Federation:
    """``make``'s parties, each behind a :class:`FaultyTransport`; ``arm(name, ft)`` arms
    its faults (None: none, a transparent wrapper)."""

    @contextlib.contextmanager
    def faulty(names: Sequence[str]) -> Iterator[MakeParty]:
        with make(names) as inner:
            def make_party(n: str) -> Party:
                p = inner(n)
                ft = FaultyTransport(p.transport)
                if arm is not None:
                    arm(n, ft)
                return Party(n, ft, role=p.role, max_message_bytes=p.max_message_bytes)

            yield make_party

    faulty.__name__ = f"faulty_{getattr(make, '__name__', 'transport')}"
    return faulty


# -- helpers ----------------------------------------------------------------------------------
def _run(make: Federation, fns: dict[str, Callable[[Party], Any]],
         timeout_s: float = 120.0) -> dict[str, Any]:
    from party.testing import run_parties

    with make(list(fns)) as make_party:
        return run_parties(fns, make_party=make_party, timeout_s=timeout_s)


@contextlib.contextmanager
def _raises(kind: type[BaseException], match: str = "") -> Iterator[None]:
    try:
        yield
    except kind as e:
        if match and not re.search(match, str(e)):
            raise ContractViolation(f"{type(e).__name__} {str(e)!r} does not match {match!r}") from e
        return
    raise ContractViolation(f"expected {kind.__name__}, nothing was raised")


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise ContractViolation(what)


# -- the checks -------------------------------------------------------------------------------
def check_order_and_buffering(make: Federation) -> None:
    """Per (src, tag) in order; interleaved tags; a later tag awaited first leaves earlier
    messages buffered."""
    n = 200

    def tx(p: Party) -> None:
        for i in range(n):
            p.send("rx", Tag("t", "s", 0, "even" if i % 2 == 0 else "odd"), i)
        p.send("rx", Tag("t", "s", 1, "late"), "r1")

    def rx(p: Party) -> tuple[list[int], list[int], str]:
        late = p.recv("tx", Tag("t", "s", 1, "late"), timeout_s=20)
        odd = [p.recv("tx", Tag("t", "s", 0, "odd"), timeout_s=20) for _ in range(n // 2)]
        even = [p.recv("tx", Tag("t", "s", 0, "even"), timeout_s=20) for _ in range(n // 2)]
        return even, odd, late

    even, odd, late = _run(make, {"tx": tx, "rx": rx})["rx"]
    _expect(even == list(range(0, n, 2)), f"even messages out of order: {even[:10]}...")
    _expect(odd == list(range(1, n, 2)), f"odd messages out of order: {odd[:10]}...")
    _expect(late == "r1", f"the later tag's message was {late!r}")


def check_no_duplicates(make: Federation) -> None:
    """Every message is delivered once: after the n sent, the next receive times out."""
    n = 20

    def tx(p: Party) -> None:
        for i in range(n):
            p.send("rx", Tag("once"), i)
        p.recv("rx", Tag("done"), timeout_s=30)

    def rx(p: Party) -> list[int]:
        got = [p.recv("tx", Tag("once"), timeout_s=20) for _ in range(n)]
        with _raises(PartyTimeout):
            extra = p.recv("tx", Tag("once"), timeout_s=0.3)
            raise ContractViolation(f"message {extra!r} delivered twice")
        p.send("tx", Tag("done"), True)
        return got

    got = _run(make, {"tx": tx, "rx": rx})["rx"]
    _expect(got == list(range(n)), f"received {got}, sent 0..{n - 1}")


def check_broadcast_gather(make: Federation) -> None:
    """One hub broadcasts to 12 parties and gathers their answers."""
    spokes = [f"p{i}" for i in range(12)]

    def hub(p: Party) -> dict[str, int]:
        p.broadcast(spokes, Tag("bg", step="q"), {"x": 3})
        return p.gather(spokes, Tag("bg", step="a"), int, timeout_s=30)

    def spoke(p: Party) -> None:
        q = p.recv("hub", Tag("bg", step="q"), timeout_s=30)
        p.send("hub", Tag("bg", step="a"), q["x"] * int(p.name[1:]))

    got = _run(make, {"hub": hub, **dict.fromkeys(spokes, spoke)})["hub"]
    _expect(got == {s: 3 * int(s[1:]) for s in spokes}, f"gathered {got}")


def check_large_arrays_bit_exact(make: Federation) -> None:
    """6 MB (chunked over gRPC), uint64 and NaN/inf/-0.0 arrays arrive bit for bit."""
    rng = np.random.default_rng(7)
    arrays: list[np.ndarray] = [rng.standard_normal((1000, 1500)).astype(np.float32),
              rng.integers(0, 2**63, size=(3, 5, 7), dtype=np.uint64),
              np.array([np.nan, np.inf, -0.0])]

    def a(p: Party) -> None:
        p.send("b", Tag("big"), arrays)

    def b(p: Party) -> list[np.ndarray]:
        return p.recv("a", Tag("big"), timeout_s=60)

    got: list[np.ndarray] = _run(make, {"a": a, "b": b})["b"]
    for x, y in zip(arrays, got, strict=True):
        _expect(x.dtype == y.dtype and x.shape == y.shape, f"{x.dtype}{x.shape} became "
                                                             f"{y.dtype}{y.shape}")
        _expect(x.tobytes() == y.tobytes(), f"{x.dtype} array bytes differ")


def check_timeout_names_peer_and_tag(make: Federation) -> None:
    """A receive with nothing to get fails after its timeout, naming the peer and the tag."""

    def a(p: Party) -> float:
        t = time.monotonic()
        with _raises(PartyTimeout, r"'b'.*t/s/3/x.*0.3 s"):
            p.recv("b", Tag("t", "s", 3, "x"), timeout_s=0.3)
        return time.monotonic() - t

    def b(p: Party) -> None:
        time.sleep(0.8)

    elapsed = _run(make, {"a": a, "b": b})["a"]
    _expect(0.25 <= elapsed < 2.0, f"a 0.3 s timeout took {elapsed:.2f} s")


def check_unknown_party(make: Federation) -> None:
    """Sending to or receiving from a name outside the federation is PartyUnavailable."""

    def a(p: Party) -> None:
        with _raises(PartyUnavailable, "mallory"):
            p.send("mallory", Tag("t"), 1)
        with _raises(PartyUnavailable, "mallory"):
            p.recv("mallory", Tag("t"), timeout_s=1)

    _run(make, {"a": a, "b": lambda p: None})


def check_dead_peer_fails_fast(make: Federation) -> None:
    """A peer that closes makes a receive waiting on it fail at once, not at its timeout."""
    started = threading.Event()

    def waiter(p: Party) -> float:
        p.recv("dier", Tag("hello"), timeout_s=20)
        started.set()
        t = time.monotonic()
        with _raises(PartyUnavailable, "dier"):  # a timeout instead is a violation
            p.recv("dier", Tag("never"), timeout_s=8)
        return time.monotonic() - t

    def dier(p: Party) -> None:
        p.send("waiter", Tag("hello"), 1)
        started.wait(20)
        time.sleep(0.2)
        p.close()

    took = _run(make, {"waiter": waiter, "dier": dier})["waiter"]
    _expect(took < 5, f"the waiter learnt of the closed peer after {took:.1f} s")


def check_gather_tolerates_dropouts(make: Federation) -> None:
    """``gather(min_count=k)`` leaves silent parties out, and times out below k."""

    def hub(p: Party) -> list[str]:
        got = p.gather(["x", "y", "z"], Tag("g"), timeout_s=1.5, min_count=2)
        with _raises(PartyTimeout):
            p.gather(["x", "y", "z"], Tag("g2"), timeout_s=0.5, min_count=3)
        return sorted(got)

    def ok(p: Party) -> None:
        p.send("hub", Tag("g"), p.name)

    got = _run(make, {"hub": hub, "x": ok, "y": ok, "z": lambda p: time.sleep(2.5)})["hub"]
    _expect(got == ["x", "y"], f"gathered {got}")


def check_transcript_and_counters(make: Federation) -> None:
    """The same exchange gives the same bytes and message counters on every transport."""

    def a(p: Party) -> dict[str, int]:
        rng = np.random.default_rng(3)
        for r in range(3):
            p.send("b", Tag("x", "s", r, "w"), rng.standard_normal(1000))
            p.recv("b", Tag("x", "s", r, "ack"), timeout_s=20)
        return p.transport.stats.snapshot()

    def b(p: Party) -> str:
        h = hashlib.sha256()
        for r in range(3):
            h.update(p.recv("a", Tag("x", "s", r, "w"), timeout_s=20).tobytes())
            p.send("a", Tag("x", "s", r, "ack"), r)
        return h.hexdigest()

    res = _run(make, {"a": a, "b": b})
    rng = np.random.default_rng(3)
    h = hashlib.sha256()
    for _ in range(3):
        h.update(rng.standard_normal(1000).tobytes())
    _expect(res["b"] == h.hexdigest(), "the received arrays differ from those sent")
    stats = res["a"]
    _expect(stats["messages_sent"] == 3 and stats["messages_received"] == 3,
            f"counters {stats}, expected 3 sent and 3 received")


def check_closed_transport(make: Federation) -> None:
    """After ``close``, this side's send and recv raise ClosedTransport."""

    def a(p: Party) -> None:
        p.close()
        with _raises(ClosedTransport):
            p.send("b", Tag("t"), 1)
        with _raises(ClosedTransport):
            p.recv("b", Tag("t"), timeout_s=1)

    _run(make, {"a": a, "b": lambda p: None})


#: every check of the contract, in the order :func:`check_transport` runs them
CHECKS: tuple[Callable[[Federation], None], ...] = (
    check_order_and_buffering,
    check_no_duplicates,
    check_broadcast_gather,
    check_large_arrays_bit_exact,
    check_timeout_names_peer_and_tag,
    check_unknown_party,
    check_dead_peer_fails_fast,
    check_gather_tolerates_dropouts,
    check_transcript_and_counters,
    check_closed_transport,
)


@dataclasses.dataclass
class Failure:
    check: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.check}: {type(self.error).__name__}: {self.error}"


def check_transport(make: Federation, *,
                    checks: Sequence[Callable[[Federation], None]] = CHECKS) -> None:
    """Run every check of the delivery contract against the transport ``make`` builds.

    Raises:
        ContractViolation: naming each check that failed and why (a check fails by a
            wrong result, a missing or wrong error, or any exception it did not expect).
    """
    failures: list[Failure] = []
    for check in checks:
        try:
            check(make)
        except Exception as e:  # every way a check can fail is reported
            failures.append(Failure(check.__name__, e))
    if failures:
        raise ContractViolation(f"{len(failures)} of {len(checks)} contract checks failed: "
                                + "; ".join(map(str, failures)))


__all__ = ["CHECKS", "ContractViolation", "Federation", "MakeParty", "check_broadcast_gather",
           "check_closed_transport", "check_dead_peer_fails_fast", "check_gather_tolerates_dropouts",
           "check_large_arrays_bit_exact", "check_no_duplicates", "check_order_and_buffering",
           "check_timeout_names_peer_and_tag", "check_transcript_and_counters", "check_transport",
           "check_unknown_party", "grpc_parties", "inmemory_parties", "with_faults"]
