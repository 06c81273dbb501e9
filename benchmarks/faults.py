"""PSI at 100k rows through the fault proxy: the issue-12 fault matrix at full size.

    python -m benchmarks.faults [--rows 100000] [--stall-s 30]

Runs a two-party PSI over gRPC with each party behind a :class:`party.testing.FaultProxy`
under no fault, 50 ms latency each way, a 10 Mbit/s cap, a reset in the middle of a
message and a stall that heals; prints one JSON line per fault: 1 when both parties got
the right shared rows in the same order. The small versions run in
``tests/party/test_faults_protocols.py`` (and for VFL, FTL and HFL in their test folders).
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks._emit import emit
from party.testing import FAULTS
from tests.party.test_faults_protocols import run_psi_with_fault


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faults")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--stall-s", type=float, default=30.0)
    args = ap.parse_args()
    for fault in ("none", *FAULTS):
        t0 = time.monotonic()
        got = run_psi_with_fault(fault, stall_s=args.stall_s, n=args.rows)
        ok = got["ids"] == got["fin_ids"] and sorted(got["ids"]) == sorted(f"c{i}" for i in range(1100))
        emit(f"psi_under_{fault}_correct", int(ok), "bool", rows=args.rows, shared=1100,
             seconds=round(time.monotonic() - t0, 1), resets=got["resets"],
             stall_s=args.stall_s if fault == "stall" else 0, loadavg=os.getloadavg())


if __name__ == "__main__":
    main()
