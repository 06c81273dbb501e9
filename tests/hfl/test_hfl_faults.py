"""HFL over gRPC with every client behind the fault proxy: the same global model (issue 12).

3 rounds under 50 ms latency, 10 Mbit/s, a reset in the middle of a message on one
client's link and a 4 s stall of one client's link; the model must be bit-identical to
the in-process simulation with the same seed.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

import hfl
from party.testing import FAULTS, FaultProxy, apply_fault

from .helpers import LinearClient, linear_client_fn
from .test_grpc import _strategy, make_federation

pytestmark = pytest.mark.grpc


@pytest.mark.parametrize("fault", FAULTS)
def test_hfl_survives(tmp_path: Path, fault: str) -> None:
    n = 4
    fed, port = make_federation(tmp_path, n)
    outcomes: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        proxies = {f"client_{i}": stack.enter_context(FaultProxy(("127.0.0.1", port)))
                   for i in range(n)}
        apply_fault(fault, proxies, "client_1", stall_s=4.0, reset_after_bytes=3_000)

        def client(i: int) -> None:
            name = f"client_{i}"
            outcomes[name] = hfl.start_client(
                server_address=proxies[name].address, client=LinearClient(i).to_client(),
                federation=fed, name=name, max_wait_time=60)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        h = hfl.start_server(server_address=f"127.0.0.1:{port}", federation=fed,
                             config=hfl.ServerConfig(num_rounds=3), strategy=_strategy(n),
                             seed=11, progress=False, min_clients_at_start=n)
        for t in threads:
            t.join(30)
        if fault == "reset":
            assert proxies["client_1"].stats.resets >= 1
    assert outcomes == {f"client_{i}": "shutdown" for i in range(n)}
    ref = hfl.simulate(linear_client_fn, n, num_rounds=3, strategy=_strategy(n), seed=11)
    assert [r["fit_clients"] for r in h.rounds] == [r["fit_clients"] for r in ref.rounds]
    assert h.parameters is not None and ref.parameters is not None
    for a, b in zip(h.parameters, ref.parameters, strict=True):
        assert a.tobytes() == b.tobytes(), fault  # bit-identical
