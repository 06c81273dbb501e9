"""Protocols over gRPC through the fault-injecting proxy give the fault-free result (issue 12).

Each fault of ``party.testing.FAULTS`` (50 ms latency each way, 10 Mbit/s, a reset in
the middle of a message, a stall that heals) is applied to a PSI run and a SecAgg+
round with dropouts; the result must equal the fault-free run's (bit-identical for
SecAgg+, whose sum is exact; for PSI the same shared rows in the same order at both
parties — its order is fresh per run by design). The 30 s stall of the issue runs in
``benchmarks.faults``; here the stall is 4 s (and marked slow at 30 s).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from party import Party
from party.grpc_transport import connect
from party.testing import FAULTS, apply_fault, faulty_grpc_federation, run_parties
from psi import PsiConfig, run_psi
from secure_agg import SecAggParams, run_client, run_server
from tests.psi.test_runner import _sets

pytestmark = pytest.mark.grpc


def _psi_sets(n: int = 3000, shared: int = 1100) -> tuple[list[str], list[str]]:
    return _sets(7, n, n, shared)


def run_psi_with_fault(fault: str, *, stall_s: float = 4.0, n: int = 3000) -> dict[str, Any]:
    a, b = _psi_sets(n)
    cfg = PsiConfig(chunk_points=500)
    with faulty_grpc_federation(["bank", "fintech"]) as (configs, proxies, _):
        apply_fault(fault, proxies, "fintech", stall_s=stall_s, reset_after_bytes=60_000)
        t0 = time.monotonic()
        out = run_parties(
            {"bank": lambda p: run_psi(p, a, config=cfg, workers=0, timeout_s=120),
             "fintech": lambda p: run_psi(p, b, config=cfg, workers=0, timeout_s=120)},
            make_party=lambda name: connect(configs[name], name, connect_timeout_s=90), timeout_s=300)
        resets = proxies["fintech"].stats.resets
    return {"ids": [a[i] for i in out["bank"].rows], "fin_ids": [b[i] for i in out["fintech"].rows],
            "resets": resets, "seconds": time.monotonic() - t0}


@pytest.mark.parametrize("fault", FAULTS)
def test_psi_survives(fault: str) -> None:
    got = run_psi_with_fault(fault)
    assert got["ids"] == got["fin_ids"]  # same shared customers, same order, at both parties
    assert sorted(got["ids"]) == sorted(f"c{i}" for i in range(1100))
    if fault == "reset":
        assert got["resets"] >= 1  # the fault really hit
    if fault == "stall":
        assert got["seconds"] >= 3.5  # the run waited the stall out


D = 2000


def run_secagg_with_fault(fault: str, *, stall_s: float = 4.0) -> tuple[np.ndarray, dict[str, str], int]:
    n = 10
    params = SecAggParams(num_clients=n, vector_length=D, mode="secagg+", dropout_fraction=0.3)
    rng = np.random.default_rng(3)
    xs = {f"c{i}": rng.normal(0, 0.1, D).astype(np.float32) for i in range(n)}
    dead = {"c9"}  # a dropout that never shows up (a fault-free run drops it too)
    fns: dict[str, Any] = {"server": lambda p: run_server(
        p, list(xs), params=params, session="f", timeout_s=45.0, graph_seed=b"\x01" * 32)}
    for u, x in xs.items():
        fns[u] = (lambda p: None) if u in dead else (
            lambda p, x=x: run_client(p, "server", x, weight=7, params=params, session="f",
                                      timeout_s=120))
    with faulty_grpc_federation(list(fns)) as (configs, proxies, _):
        apply_fault(fault, proxies, "c3", stall_s=stall_s, reset_after_bytes=12_000)

        def make(name: str) -> Party:
            return connect(configs[name], name, connect_timeout_s=90)

        out = run_parties(fns, make_party=make, timeout_s=300)
        resets = proxies["c3"].stats.resets
    res = out["server"]
    return res.mean, dict(res.dropped), resets


def test_secagg_plus_survives_every_fault() -> None:
    """Same survivors and the same mean within one quantisation step (stochastic rounding
    makes two runs differ below the step, with or without faults)."""
    params = SecAggParams(num_clients=10, vector_length=D, mode="secagg+", dropout_fraction=0.3)
    clean, dropped, _ = run_secagg_with_fault("none")
    assert dropped == {"c9": "advertise_keys"}
    for fault in FAULTS:
        got, dropped_f, resets = run_secagg_with_fault(fault)
        assert dropped_f == dropped, fault
        np.testing.assert_allclose(got, clean, rtol=0, atol=2 * params.step, err_msg=fault)
        if fault == "reset":
            assert resets >= 1


@pytest.mark.slow
def test_psi_survives_the_30_s_stall() -> None:
    got = run_psi_with_fault("stall", stall_s=30.0)
    assert got["ids"] == got["fin_ids"] and len(got["ids"]) == 1100
