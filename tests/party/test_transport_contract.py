"""One contract suite, parametrised over the in-memory and the gRPC transport."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from party import Party, PartyTimeout, PartyUnavailable, Tag
from party.testing import run_parties

TRANSPORTS = ["inmemory", pytest.param("grpc", marks=pytest.mark.grpc)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_order_per_src_tag_and_interleaved_tags(transport: str) -> None:
    n = 200

    def sender(p: Party) -> None:
        for i in range(n):
            p.send("rx", Tag("t", "s", 0, "even" if i % 2 == 0 else "odd"), i)
        p.send("rx", Tag("t", "s", 1, "late"), "r1")

    def rx(p: Party) -> tuple[list[int], list[int], str]:
        # The later round's message is awaited first: earlier ones stay buffered.
        late = p.recv("tx", Tag("t", "s", 1, "late"), timeout_s=10)
        odd = [p.recv("tx", Tag("t", "s", 0, "odd"), timeout_s=10) for _ in range(n // 2)]
        even = [p.recv("tx", Tag("t", "s", 0, "even"), timeout_s=10) for _ in range(n // 2)]
        return even, odd, late

    res = run_parties({"tx": sender, "rx": rx}, transport=transport)
    even, odd, late = res["rx"]
    assert even == list(range(0, n, 2))
    assert odd == list(range(1, n, 2))
    assert late == "r1"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_broadcast_gather_many_parties(transport: str) -> None:
    names = ["hub"] + [f"p{i}" for i in range(12)]
    spokes = names[1:]

    def hub(p: Party) -> dict[str, int]:
        p.broadcast(spokes, Tag("bg", step="q"), {"x": 3})
        return p.gather(spokes, Tag("bg", step="a"), int, timeout_s=20)

    def spoke(p: Party) -> None:
        q = p.recv("hub", Tag("bg", step="q"), timeout_s=20)
        p.send("hub", Tag("bg", step="a"), q["x"] * int(p.name[1:]))

    fns = {"hub": hub, **dict.fromkeys(spokes, spoke)}
    res = run_parties(fns, transport=transport)
    assert res["hub"] == {s: 3 * int(s[1:]) for s in spokes}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_large_arrays_bit_exact(transport: str) -> None:
    rng = np.random.default_rng(7)
    arrays = [
        rng.standard_normal((1000, 1500)).astype(np.float32),  # 6 MB: chunked over gRPC
        rng.integers(0, 2**63, size=(3, 5, 7), dtype=np.uint64),
        np.array([np.nan, np.inf, -0.0]),
    ]

    def a(p: Party) -> None:
        p.send("b", Tag("big"), arrays)

    def b(p: Party) -> list[np.ndarray]:
        return p.recv("a", Tag("big"), timeout_s=30)

    got = run_parties({"a": a, "b": b}, transport=transport)["b"]
    for x, y in zip(arrays, got, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timeout_names_peer_and_tag(transport: str) -> None:
    def a(p: Party) -> float:
        t = time.monotonic()
        with pytest.raises(PartyTimeout, match=r"'b'.*t/s/3/x.*0.3 s"):
            p.recv("b", Tag("t", "s", 3, "x"), timeout_s=0.3)
        return time.monotonic() - t

    def b(p: Party) -> None:
        time.sleep(0.8)

    elapsed = run_parties({"a": a, "b": b}, transport=transport)["a"]
    assert 0.25 <= elapsed < 2.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_party_name(transport: str) -> None:
    def a(p: Party) -> None:
        with pytest.raises(PartyUnavailable, match="mallory"):
            p.send("mallory", Tag("t"), 1)
        with pytest.raises(PartyUnavailable, match="mallory"):
            p.recv("mallory", Tag("t"), timeout_s=1)

    run_parties({"a": a, "b": lambda p: None}, transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dead_peer_fails_fast_not_at_timeout(transport: str) -> None:
    started = threading.Event()

    def waiter(p: Party) -> float:
        p.recv("dier", Tag("hello"), timeout_s=10)
        started.set()
        t = time.monotonic()
        with pytest.raises(PartyUnavailable, match="dier"):
            p.recv("dier", Tag("never"), timeout_s=30)
        return time.monotonic() - t

    def dier(p: Party) -> None:
        p.send("waiter", Tag("hello"), 1)
        started.wait(10)
        time.sleep(0.2)
        p.close()  # run_parties closes again; harmless

    res = run_parties({"waiter": waiter, "dier": dier}, transport=transport)
    assert res["waiter"] < 5


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_gather_with_min_count_tolerates_dropouts(transport: str) -> None:
    def hub(p: Party) -> list[str]:
        got = p.gather(["x", "y", "z"], Tag("g"), timeout_s=1.5, min_count=2)
        with pytest.raises(PartyTimeout):
            p.gather(["x", "y", "z"], Tag("g2"), timeout_s=0.5, min_count=3)
        return sorted(got)

    def ok(p: Party) -> None:
        p.send("hub", Tag("g"), p.name)

    res = run_parties({"hub": hub, "x": ok, "y": ok, "z": lambda p: time.sleep(2.5)},
                      transport=transport)
    assert res["hub"] == ["x", "y"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_same_transcript_both_transports(transport: str) -> None:
    """Row 37: the same exchange gives identical bytes and counters on both transports."""

    def a(p: Party) -> dict[str, int]:
        rng = np.random.default_rng(3)
        for r in range(3):
            p.send("b", Tag("x", "s", r, "w"), rng.standard_normal(1000))
            p.recv("b", Tag("x", "s", r, "ack"), timeout_s=10)
        return p.transport.stats.snapshot()

    def b(p: Party) -> str:
        import hashlib

        h = hashlib.sha256()
        for r in range(3):
            w = p.recv("a", Tag("x", "s", r, "w"), timeout_s=10)
            h.update(w.tobytes())
            p.send("a", Tag("x", "s", r, "ack"), r)
        return h.hexdigest()

    res = run_parties({"a": a, "b": b}, transport=transport)
    rng = np.random.default_rng(3)
    import hashlib

    h = hashlib.sha256()
    for _ in range(3):
        h.update(rng.standard_normal(1000).tobytes())
    assert res["b"] == h.hexdigest()
    assert res["a"]["messages_sent"] == 3 and res["a"]["messages_received"] == 3
