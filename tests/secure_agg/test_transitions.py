"""The full transition tables of SecAgg's client and server (party.fsm), pair by pair
and as a real round takes them."""

from __future__ import annotations

from typing import Any

import numpy as np

from party.testing import check_transitions, traced, uncovered
from secure_agg import SecAggClient, SecAggParams, SecAggServer, ServerStage, Stage
from secure_agg.client import TRANSITIONS
from secure_agg.server import SERVER_TRANSITIONS
from tests.secure_agg.harness import Harness

D = 64


def _params(n: int) -> SecAggParams:
    return SecAggParams(num_clients=n, vector_length=D, mode="secagg")


def test_every_client_pair() -> None:
    p = _params(4)
    calls: dict[str, Any] = {
        "advertise_keys": lambda c: c.advertise_keys(),
        "share_keys": lambda c: c.share_keys(None),
        "masked_input": lambda c: c.masked_input(None, np.zeros(D)),
        "unmask": lambda c: c.unmask(None),
    }
    n = check_transitions(lambda: SecAggClient("c000", params=p, session="s"), calls, Stage)
    assert n == len(TRANSITIONS) * len(Stage)


def test_every_server_pair() -> None:
    p = _params(4)
    ids = ["c000", "c001", "c002", "c003"]
    calls: dict[str, Any] = {
        "advertise_keys": lambda s: s.advertise_keys({}),
        "share_keys": lambda s: s.share_keys({}),
        "add_masked_input": lambda s: s.add_masked_input("c000", None),
        "masked_input": lambda s: s.masked_input({}),
        "unmask": lambda s: s.unmask({}),
        "reject": lambda s: s.reject("c000", "share_keys", "undecodable"),
    }
    n = check_transitions(lambda: SecAggServer(ids, params=p, session="s"), calls, ServerStage)
    assert n == len(SERVER_TRANSITIONS) * len(ServerStage)


def test_a_round_takes_the_tables_transitions() -> None:
    h = Harness(5, _params(5))
    with traced(*h.clients.values()) as client_trace, traced(h.server) as server_trace:
        h.check(h.run())
        h.server.stage = ServerStage.UNMASK  # (forced) a late undecodable answer is recorded
        h.server.reject("c001", "unmask_shares", "undecodable")
    assert uncovered(TRANSITIONS, client_trace) == []
    # reject happens only when a runner cannot decode a message; a run leaves it in the
    # stages it did not need (check_transitions drives those pairs)
    assert uncovered(SERVER_TRANSITIONS, server_trace) == [
        "reject in ADVERTISE", "reject in MASKED", "reject in SHARE"]


def test_the_machines_never_read_the_clock_unless_given_one() -> None:
    h = Harness(5, _params(5))
    h.check(h.run())
    assert h.server.timings == {} and all(c.timings == {} for c in h.clients.values())
