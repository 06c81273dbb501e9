"""FaultyTransport against a real protocol: SecAgg+ treats a lost or undecodable masked input as
a dropout and still returns the survivors' sum (the kit's use, beyond the contract checks).

(A masked input damaged *inside its data* decodes and would corrupt the sum: SecAgg has no
integrity of its own; over gRPC, TLS provides it, and a malicious client is out of its scope.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from party import InMemoryNetwork, Party
from party.testing import FaultyTransport, run_parties
from secure_agg import SecAggParams, run_client, run_server

CLIENTS = [f"c{i}" for i in range(5)]
D = 16


def secagg_round(arm: Any) -> tuple[Any, dict[str, Any], FaultyTransport]:
    net = InMemoryNetwork(["server", *CLIENTS])
    ft = FaultyTransport(net.transport("c4"))
    arm(ft)
    params = SecAggParams(num_clients=len(CLIENTS), vector_length=D, timeout_s=3.0)
    xs = {c: np.random.default_rng(i).uniform(-1, 1, D) for i, c in enumerate(CLIENTS)}

    def server(p: Party) -> Any:
        return run_server(p, CLIENTS, params=params, session="s", round=0)

    def client(p: Party) -> Any:
        return run_client(p, "server", xs[p.name], params=params, session="s", round=0)

    out = run_parties({"server": server, **dict.fromkeys(CLIENTS, client)}, timeout_s=120,
                      make_party=lambda n: Party(n, ft if n == "c4" else net.transport(n)))
    return out, xs, ft


@pytest.mark.parametrize("fault", ["drop", "corrupt"])
def test_a_lost_or_undecodable_masked_input_is_a_dropout(fault: str) -> None:
    def arm(t: FaultyTransport) -> None:
        if fault == "drop":
            t.drop(step="masked_input")
        else:
            t.corrupt(step="masked_input", at=0)  # the codec's header: CodecError at the server

    out, xs, ft = secagg_round(arm)
    res = out["server"]
    assert ("c4" not in res.survivors) and sorted(res.survivors) == CLIENTS[:4]
    assert "masked_input" in res.dropped["c4"]
    want = sum(xs[c] for c in CLIENTS[:4])
    np.testing.assert_allclose(res.sum, want, atol=4 * 2 * 8.0 / 2**16)
    assert out["c4"].completed is False
    assert [k for k, _, _ in ft.applied] == [fault]
