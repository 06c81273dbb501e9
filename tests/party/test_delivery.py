"""The delivery contract of party.transport: incarnations, held messages, reconnects, aborts.

Each test names the issue-12 case it covers (threats rows 34-39 and the long-lived
federation cases).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from party import InMemoryNetwork, Party, PartyTimeout, PartyUnavailable, PeerAborted, Tag
from party.errors import ConfigError
from party.grpc_transport import connect
from party.router import Router
from party.testing import grpc_federation

T = Tag("d", "s")


# -- in memory -----------------------------------------------------------------------------------
def test_inmemory_new_incarnation_gets_held_messages_and_old_ones_are_purged() -> None:
    net = InMemoryNetwork(["a", "b"])
    a, b = net.transport("a"), net.transport("b")
    old_b = b.incarnation
    b.send("a", T.at("stale"), b"from the dead b")
    net.disconnect("b", "killed")
    with pytest.raises(PartyUnavailable, match="killed"):
        a.recv("b", T.at("x"), timeout_s=5)
    a.send("b", T.at("hello"), b"held for the next b")  # b is down: held, not lost
    b2 = net.transport("b")
    assert b2.incarnation != old_b and a.peer_incarnation("b") == b2.incarnation
    assert bytes(b2.recv("a", T.at("hello"), timeout_s=1)) == b"held for the next b"
    with pytest.raises(PartyTimeout):  # the dead incarnation's message never reaches a new run
        a.recv("b", T.at("stale"), timeout_s=0.3)
    b2.send("a", T.at("x"), b"new")
    assert bytes(a.recv("b", T.at("x"), timeout_s=1)) == b"new"


def test_inmemory_hold_is_bounded_and_the_sender_is_told() -> None:
    net = InMemoryNetwork(["a", "b"], hold_bytes=1000)
    a = net.transport("a")
    net.disconnect("b")
    a.send("b", T, b"x" * 600)
    with pytest.raises(PartyUnavailable, match=r"'b'.*hold bound"):
        a.send("b", T, b"x" * 600)


@pytest.mark.parametrize("transport", ["inmemory", "grpc"])
def test_abort_fails_the_peer_at_once_with_the_reason(transport: str, tmp_path: Path) -> None:
    def run(pa: Party, pb: Party) -> None:
        t0 = time.monotonic()
        threading.Timer(0.3, pa.transport.abort, args=("s", "input file is empty")).start()
        with pytest.raises(PeerAborted, match="input file is empty") as ei:
            pb.recv("a", Tag("d", "s", 0, "hello"), timeout_s=30)
        assert ei.value.peer == "a" and time.monotonic() - t0 < 10
        # another session of the same peer is not affected
        with pytest.raises(PartyTimeout):
            pb.recv("a", Tag("d", "other"), timeout_s=0.3)

    if transport == "inmemory":
        net = InMemoryNetwork(["a", "b"])
        run(Party("a", net.transport("a")), Party("b", net.transport("b")))
    else:
        with grpc_federation(["a", "b"], directory=tmp_path) as (config, _), \
                connect(config, "a") as pa, connect(config, "b") as pb:
            run(pa, pb)


# -- over gRPC ---------------------------------------------------------------------------------


@pytest.mark.grpc
def test_message_for_a_party_that_left_is_held_for_its_next_incarnation(tmp_path: Path) -> None:
    """Issue 12, case 2: once a party connected and left, frames for it used to be dropped."""
    with grpc_federation(["bank", "fintech"], directory=tmp_path) as (config, _), \
            connect(config, "bank") as bank:
        with connect(config, "fintech") as fin:
            fin.send("bank", T.at("run1"), "done")
            assert bank.recv("fintech", T.at("run1"), timeout_s=5) == "done"
        time.sleep(0.5)  # fintech has left; the bank starts its next run first
        bank.send("fintech", T.at("run2"), "hello")
        time.sleep(1.0)
        with connect(config, "fintech") as fin2:
            assert fin2.recv("bank", T.at("run2"), timeout_s=5) == "hello"


@pytest.mark.grpc
def test_dead_incarnations_messages_never_reach_a_new_run(tmp_path: Path) -> None:
    """Issue 12, case 1: the bank read a killed fintech's hello and got a wrong alignment."""
    with grpc_federation(["bank", "fintech"], directory=tmp_path) as (config, _):
        fin = connect(config, "fintech")
        fin.send("bank", T.at("hello"), "nonce of the dead fintech")
        fin.transport.close(linger_s=0)  # type: ignore[call-arg]  # dies before the bank connects
        with connect(config, "fintech") as fin2:
            fin2.send("bank", T.at("hello"), "nonce of the live fintech")
            with connect(config, "bank") as bank:
                assert bank.recv("fintech", T.at("hello"), timeout_s=5) == "nonce of the live fintech"
                with pytest.raises(PartyTimeout):
                    bank.recv("fintech", T.at("hello"), timeout_s=0.5)


@pytest.mark.grpc
def test_restart_while_peer_waits_is_reported_and_the_new_incarnation_is_seen(tmp_path: Path) -> None:
    with grpc_federation(["a", "b"], directory=tmp_path) as (config, _), connect(config, "a") as a:
        b = connect(config, "b")
        # a hears of b's arrival from the router asynchronously: wait for it (a CI run read
        # peer_incarnation before the notice arrived and got None)
        inc = a.transport.wait_peer("b", timeout_s=10)  # type: ignore[attr-defined]
        assert inc == b.transport.incarnation == a.transport.peer_incarnation("b")  # type: ignore[attr-defined]
        b.send("a", T.at("old"), "from b's first incarnation")
        time.sleep(0.3)
        errs: list[BaseException] = []

        def waiter() -> None:  # a is waiting on b when b crashes and restarts
            try:
                a.recv("b", T.at("never"), timeout_s=30)
            except BaseException as e:
                errs.append(e)

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.3)
        b.transport._link.call.cancel()  # type: ignore[attr-defined]  # b "crashes": no goodbye
        b.transport._closed = True  # type: ignore[attr-defined]  # and does not reconnect
        t0 = time.monotonic()
        b2 = connect(config, "b")  # a new incarnation replaces it at once (no grace wait)
        th.join(10)
        assert time.monotonic() - t0 < 5
        assert len(errs) == 1 and isinstance(errs[0], PartyUnavailable)
        assert "restarted" in str(errs[0]) and errs[0].peer == "b"
        assert a.transport.wait_peer("b", timeout_s=5, other_than=inc) == b2.transport.incarnation  # type: ignore[attr-defined]
        b2.send("a", T.at("new"), "from b2")
        assert a.recv("b", T.at("new"), timeout_s=5) == "from b2"
        with pytest.raises(PartyTimeout):  # b's unconsumed message went with its incarnation
            a.recv("b", T.at("old"), timeout_s=0.3)
        b2.close()


@pytest.mark.grpc
def test_link_reset_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    """A link that drops and reconnects inside one process keeps its incarnation; unacknowledged
    messages are resent, and the receiver drops what it already delivered."""
    with grpc_federation(["a", "b"], directory=tmp_path) as (config, _), \
            connect(config, "a", chunk_bytes=64 << 10) as a, connect(config, "b") as b:
        inc = b.transport.incarnation  # type: ignore[attr-defined]
        xs = [np.full(50_000, i, dtype=np.int64) for i in range(20)]
        got: list[int] = []

        def rx() -> None:
            for _ in xs:
                got.append(int(b.recv("a", T.at("x"), timeout_s=30)[0]))

        th = threading.Thread(target=rx)
        th.start()
        for i, x in enumerate(xs):
            a.send("b", T.at("x"), x)
            if i in (5, 12):
                a.transport._link.call.cancel()  # type: ignore[attr-defined]  # sender's link drops
            if i == 9:
                b.transport._link.call.cancel()  # type: ignore[attr-defined]  # receiver's link drops
        th.join(60)
        assert got == list(range(20))
        with pytest.raises(PartyTimeout):
            b.recv("a", T.at("x"), timeout_s=0.5)  # no duplicate left over
        assert b.transport.incarnation == inc  # type: ignore[attr-defined]


@pytest.mark.grpc
def test_hold_bound_in_time_names_the_peer(tmp_path: Path) -> None:
    with grpc_federation(["a", "b"], directory=tmp_path) as (config, _), \
            connect(config, "a", hold_s=1.0) as a:
        a.send("b", T, "b never connects")
        time.sleep(2.5)
        with pytest.raises(PartyUnavailable, match=r"'b'.*unacknowledged after 1 s"):
            a.send("b", T, "again")
        with pytest.raises(PartyUnavailable, match="'b'"):
            a.recv("b", T, timeout_s=5)
        a.transport.close(linger_s=0)  # type: ignore[call-arg]


@pytest.mark.grpc
def test_hold_bound_in_bytes_names_the_peer(tmp_path: Path) -> None:
    with grpc_federation(["a", "b"], directory=tmp_path) as (config, _), \
            connect(config, "a", hold_bytes=1 << 20) as a:
        a.send("b", T, np.zeros(100_000))  # 800 kB held for an absent b
        with pytest.raises(PartyUnavailable, match=r"'b'.*hold bound"):
            a.send("b", T, np.zeros(100_000))
        a.transport.close(linger_s=0)  # type: ignore[call-arg]


@pytest.mark.grpc
def test_abort_is_remembered_for_a_peer_that_connects_after_it(tmp_path: Path) -> None:
    """Issue 12, case 4: a party that refused its input made its peer wait its whole timeout."""
    with grpc_federation(["bank", "fintech"], directory=tmp_path) as (config, _):
        with connect(config, "fintech") as fin:
            fin.transport.abort("*", "fintech.csv: no column 'id'")  # type: ignore[attr-defined]
            time.sleep(0.3)
        with connect(config, "bank") as bank:
            t0 = time.monotonic()
            with pytest.raises(PeerAborted, match="no column 'id'"):
                bank.recv("fintech", Tag("psi", "run7", 0, "hello"), timeout_s=60)
            assert time.monotonic() - t0 < 5


@pytest.mark.grpc
def test_second_router_on_a_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    """Issue 12, case 3: gRPC's SO_REUSEPORT let two routers share one port."""
    with grpc_federation(["a", "b"], directory=tmp_path) as (config, router):
        with pytest.raises(ConfigError, match="in use"):
            Router(config, listen=f"127.0.0.1:{router.port}").start()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            with pytest.raises(ConfigError, match="in use"):
                Router(config, listen=f"127.0.0.1:{s.getsockname()[1]}").start()
        finally:
            s.close()
