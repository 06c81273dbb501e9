"""One bank of the credit federation: trains on its own CSV, sends updates only through SecAgg+.

    python -m examples.banks.bank --config fed/federation.toml --party bank_a [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

import hfl
from examples.banks.task import DATA_DIR, FILES, BankClient, load_csv
from party import cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.banks.bank", __doc__)
    cli.add_federation(ap, party_help=f"this bank: one of {', '.join(sorted(FILES))}")
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    ap.add_argument("--limit", type=int, default=None, help="use the first N rows only")
    args = ap.parse_args(argv)
    if args.party not in FILES:
        ap.error(f"--party: {args.party!r} is not one of {', '.join(sorted(FILES))}")
    torch.set_num_threads(1)
    return cli.run(args.party, lambda: train(args))


def train(args: argparse.Namespace) -> int:
    x, y = load_csv(f"{args.data_dir}/{FILES[args.party]}", args.limit)
    print(f"{args.party}: {len(y)} customers, default rate {float(y.mean()):.3f}", flush=True)
    why = hfl.start_client(client=BankClient(x, y, seed=sorted(FILES).index(args.party)),
                           federation=args.config, name=args.party)
    print(f"{args.party}: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
