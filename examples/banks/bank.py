"""One bank of the credit federation: trains on its own CSV, sends updates only through SecAgg+.

    python -m examples.banks.bank --federation fed/federation.toml --name bank_a [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

import hfl
from examples.banks.task import DATA_DIR, FILES, BankClient, load_csv
from party import TesseraError


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--federation", required=True)
    ap.add_argument("--name", required=True, choices=sorted(FILES))
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    ap.add_argument("--limit", type=int, default=None, help="use the first N rows only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        x, y = load_csv(f"{args.data_dir}/{FILES[args.name]}", args.limit)
        print(f"{args.name}: {len(y)} customers, default rate {float(y.mean()):.3f}", flush=True)
        why = hfl.start_client(client=BankClient(x, y, seed=sorted(FILES).index(args.name)),
                               federation=args.federation, name=args.name)
    except TesseraError as e:
        print(f"{args.name}: {e}", file=sys.stderr)
        return 2
    print(f"{args.name}: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
