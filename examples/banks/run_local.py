"""Three banks and an aggregator as four processes on localhost: FedAvg + SecAgg+ over gRPC mTLS.

    python -m examples.banks.run_local [--smoke] [--rounds 10] [--out DIR]

Makes a CA and certificates, writes federation.toml (aggregator = server; bank_a,
bank_b, bank_c = clients), starts ``examples.banks.aggregator`` (it hosts the
router) and, once its port listens, three ``examples.banks.bank`` processes
(``party.local.run_hfl``: the first failure stops every process).
``--smoke``: 2 rounds on 1,000 rows per bank.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples.banks.task import FILES
from party import cli
from party.local import run_hfl


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.banks.run_local", __doc__)
    ap.add_argument("--smoke", action="store_true", help="2 rounds, 1,000 rows per bank")
    ap.add_argument("--rounds", type=int, default=None, help="default 10 (smoke: 2)")
    cli.add_out(ap, help="certificates, federation.toml, logs, out/ (default: temp)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.smoke else 10)
    banks = sorted(FILES)
    limit = ["--limit", "1000"] if args.smoke else []

    def body() -> int:
        out = run_hfl("aggregator", "examples.banks.aggregator", banks, "examples.banks.bank",
                      name="credit-hfl", out=args.out, server_args=["--rounds", rounds],
                      client_args=limit)
        print(f"banks: done; history in {out}")
        return 0

    return cli.run("banks", body)


if __name__ == "__main__":
    sys.exit(main())
