"""FTL training over gRPC through the fault proxy gives the fault-free losses (issue 12).

HE training is not bit-reproducible (fresh CKKS noise and masks each run), so each
fault's run must match the plaintext reference within the same tolerance as the
fault-free gRPC test (1e-6 on the per-epoch losses).
"""

from __future__ import annotations

import numpy as np
import pytest

from ftl import train_ftl, train_plaintext
from party.grpc_transport import connect
from party.testing import FAULTS, apply_fault, faulty_grpc_federation, run_parties
from tests.ftl.helpers import small_params, toy

pytestmark = pytest.mark.grpc


def test_ftl_survives_every_fault() -> None:
    t = toy()
    p = small_params(epochs=1)
    ref = train_plaintext(t.guest, t.host, p)
    fns = {
        "A": lambda party: train_ftl(party, "B", role="guest", x=t.guest.x, y=t.guest.y,
                                     overlap=t.guest.overlap, params=p),
        "B": lambda party: train_ftl(party, "A", role="host", x=t.host.x,
                                     overlap=t.host.overlap, params=p),
    }
    for fault in FAULTS:
        with faulty_grpc_federation(["A", "B"]) as (configs, proxies, _):
            apply_fault(fault, proxies, "B", stall_s=4.0, reset_after_bytes=300_000)
            out = run_parties(fns, make_party=lambda n: connect(configs[n], n, connect_timeout_s=90), timeout_s=240)
            if fault == "reset":
                assert proxies["B"].stats.resets >= 1
        np.testing.assert_allclose(out["A"].epoch_losses, ref.epoch_losses, atol=1e-6,
                                   err_msg=fault)
        assert out["A"].epoch_losses == out["B"].epoch_losses, fault
