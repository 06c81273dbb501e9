"""SecureBoost end to end on one machine: router + bank + fintech as processes, gRPC with mTLS.

    .venv/bin/python -m examples.secureboost.run_local --smoke     # 3,000 customers, 5 trees of depth 3
    .venv/bin/python -m examples.secureboost.run_local             # 30,000 customers, 20 trees of depth 5

Steps: (1) federated WOE/IV binning, (2) SecureBoost training over HEU's OU with the
evaluation report (AUC, KS, ROC/KS/lift/gains PNG + JSON, at the bank) and the bank-only
baseline, (3) scoring of the held-out customers in new processes from the two saved halves.
The rows are FATE's files as they are (already aligned); ``python -m
examples.bank_fintech.run_local --model boost`` runs the same steps after PSI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from examples.bank_fintech.boost import print_summary, run_steps
from party.local import LocalFederation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--mode", choices=["classic", "layered", "mix"], default="classic")
    ap.add_argument("--scheme", choices=["ou", "paillier", "plaintext"], default="ou")
    ap.add_argument("--rows", type=int, default=None, help="override: first N customers")
    ap.add_argument("--trees", type=int, default=None, help="override: number of trees")
    ap.add_argument("--depth", type=int, default=None, help="override: max depth")
    a = ap.parse_args(argv)
    work = Path(a.out or tempfile.mkdtemp(prefix="tessera-secureboost-")).resolve()
    rows, trees, depth = (3000, 5, 3) if a.smoke else (0, 20, 5)
    rows, trees, depth = a.rows or rows, a.trees or trees, a.depth or depth
    t0 = time.monotonic()
    print(f"tessera SecureBoost example - working directory {work}", flush=True)
    with LocalFederation({"bank": "active", "fintech": "passive"}, name="secureboost-demo", out=work,
                         timeout_s=120) as fed:
        run_steps(fed, work, ["--config", fed.config, "--rows", rows, "--trees", trees, "--depth", depth,
                              "--mode", a.mode, "--scheme", a.scheme])
    print_summary(work)
    print(f"finished in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
