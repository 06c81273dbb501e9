"""The fintech: passive party (features only, no labels) of the vertical FL demo.

    python -m examples.bank_fintech.fintech --config fed.toml --party fintech \
        --data fintech_aligned.csv --out out/fintech [--compare]

Follows the bank's training plan (it checks the row count, the aligned IDs and
the mode first), sends only CKKS-encrypted activations in HE mode, learns only
the gradient of its own bottom model, and saves its part of the model. It never
sees a label, a score or the bank's features.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from examples.bank_fintech.common import fail, parser
from examples.bank_fintech.task import Preprocessor, fintech_model, read_table, test_split
from party.errors import TesseraError
from vfl.trainer import PassiveTrainer, TrainConfig


def main(argv: list[str] | None = None) -> int:
    ap = parser("fintech", __doc__ or "")
    ap.add_argument("--active", default="bank", help="the active party's name")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (TesseraError, ValueError, OSError) as e:
        return fail("fintech", e)


def run(args: Any) -> int:
    import torch

    from party.config import load_federation
    from party.grpc_transport import connect

    torch.set_num_threads(1)  # tiny models; SEAL dominates and the peer needs the other core
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tab = read_table(args.data, id_column=args.id_column)
    n = min(args.rows or len(tab.ids), len(tab.ids))
    ids, x = tab.ids[:n], tab.x[:n]
    tr, te = test_split(n, seed=args.seed)
    xs = Preprocessor().fit(x[tr]).transform(x)
    fed = load_federation(args.config)
    modes = ["he", "plaintext"] if args.compare else ["he"]
    with connect(fed, args.party) as party:
        for mode in modes:
            cfg = TrainConfig(mode=mode, seed=args.seed, session=f"demo-{mode}",
                              checkpoint_dir=str(out / f"checkpoints-{mode}"),
                              timeout_s=args.timeout_s)
            trainer = PassiveTrainer(party, args.active, fintech_model(xs.shape[1]), xs[tr],
                                     ids=[ids[i] for i in tr], config=cfg)
            t0 = time.perf_counter()
            trainer.fit()
            trainer.predict(xs[te], ids=[ids[i] for i in te])
            trainer.save_model(out / f"fintech_model_{mode}.pt")
            s = party.transport.stats.snapshot()
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print(f"[fintech] {mode}: done in {time.perf_counter() - t0:.0f} s; "
                  f"{s['bytes_sent'] / 1e6:.1f} MB sent so far; peak RSS {rss:.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
