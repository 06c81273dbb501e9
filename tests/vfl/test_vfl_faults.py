"""VFL training over gRPC through the fault proxy ends with the fault-free model (issue 12).

Plaintext mode is deterministic, so the scores must be bit-identical to the in-memory,
fault-free run under 50 ms latency, 10 Mbit/s, a reset in the middle of a message and
a stall that heals (4 s here; the 30 s stall runs in the slow PSI test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from party import Party, Role
from party.grpc_transport import connect
from party.testing import FAULTS, apply_fault, faulty_grpc_federation, run_parties
from tests.vfl.conftest import ROWS
from vfl.split import default_active, default_passive
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig

pytestmark = pytest.mark.grpc  # the `data` fixture (ROWS + 60 customers) is in tests/vfl/conftest.py


def _fns(data: dict[str, Any]) -> dict[str, Any]:
    c = TrainConfig(mode="plaintext", epochs=2, batch_size=64, eval_batch_size=128,
                    val_fraction=0.25, timeout_s=90.0)
    xa, y, ids = data["xa"][:ROWS], data["y"][:ROWS], data["ids"][:ROWS]

    def bank(p: Party) -> np.ndarray:
        t = ActiveTrainer(p, ["fintech"], default_active(xa.shape[1], hidden=8, d=4, k=3, seed=2),
                          xa, y, ids=ids, config=c)
        t.fit()
        return t.predict(data["xa"][ROWS:], ids=data["ids"][ROWS:])

    def fintech(p: Party) -> None:
        t = PassiveTrainer(p, "bank", default_passive(data["xp"].shape[1], hidden=8, d=4, seed=3),
                           data["xp"][:ROWS], ids=ids, config=c)
        t.fit()
        t.predict(data["xp"][ROWS:], ids=data["ids"][ROWS:])

    return {"bank": bank, "fintech": fintech}


def test_vfl_survives_every_fault_bit_identically(data: dict[str, Any]) -> None:
    roles = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}
    ref = run_parties(_fns(data), roles=roles)["bank"]
    for fault in FAULTS:
        with faulty_grpc_federation(["bank", "fintech"], roles=roles) as (configs, proxies, _):
            apply_fault(fault, proxies, "fintech", stall_s=4.0, reset_after_bytes=40_000)
            got = run_parties(_fns(data), make_party=lambda n: connect(configs[n], n, connect_timeout_s=90),
                              timeout_s=240)["bank"]
            if fault == "reset":
                assert proxies["fintech"].stats.resets >= 1
        np.testing.assert_array_equal(got, ref, err_msg=fault)
