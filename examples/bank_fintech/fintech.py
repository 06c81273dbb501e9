"""The fintech: passive party (features only, no labels) of the vertical FL demo.

    python -m examples.bank_fintech.fintech --config fed.toml --party fintech \
        --data fintech_aligned.csv --out out/fintech [--compare]

Follows the bank's training plan (it checks the row count, the aligned IDs and
the mode first), sends only CKKS-encrypted activations in HE mode, learns only
the gradient of its own bottom model, and saves its part of the model (and its
preprocessing). It never sees a label, a score or the bank's features.

Later, in a new process, take part in the bank's scoring with the saved halves
(no retraining; the bank runs ``bank.py --score`` at the same time):

    python -m examples.bank_fintech.fintech --score --config fed.toml --party fintech \
        --data fintech_aligned.csv --out out/fintech [--mode he] [--held-out]

It loads ``OUT/fintech_model_MODE.pt`` and ``OUT/fintech_preprocess.json``; the
bank refuses (and so does the fintech) if the two halves come from different
training runs. The fintech learns no scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from examples.bank_fintech.common import parser, run, score_config, scoring_rows
from examples.bank_fintech.task import Preprocessor, by_id, fintech_model, read_table, test_split
from party.files import write_atomic
from vfl.trainer import PassiveTrainer, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    ap = parser("fintech", __doc__ or "")
    ap.add_argument("--active", default="bank", help="the active party's name")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run("fintech", args, train=train, score=score)


def score(party: Any, args: Any) -> int:
    """Load the saved half and preprocessing; serve the bank's scoring of the aligned rows."""
    tab = by_id(read_table(args.data, id_column=args.id_column))
    model_file, rows, xs = scoring_rows("fintech", args, tab)
    trainer = PassiveTrainer.load_model(model_file, party, fintech_model(xs.shape[1]),
                                        config=score_config(args))
    t0 = time.perf_counter()
    trainer.predict(xs, ids=[tab.ids[i] for i in rows])
    print(f"[fintech] loaded {model_file} (model {trainer.run_id}); took part in scoring "
          f"{len(rows)} customers in {time.perf_counter() - t0:.1f} s (it sees no scores)",
          flush=True)
    return len(rows)


def train(party: Any, args: Any) -> int:
    """Follow the bank's training in each mode, take part in test scoring, save the half."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tab = by_id(read_table(args.data, id_column=args.id_column))
    n = min(args.rows or len(tab.ids), len(tab.ids))
    ids, x = tab.ids[:n], tab.x[:n]
    tr, te = test_split(n, seed=args.seed)
    pre = Preprocessor().fit(x[tr])
    xs = pre.transform(x)
    write_atomic(out / "fintech_preprocess.json", pre.to_json() + "\n")  # for --score later
    modes = ["he", "plaintext"] if args.compare else ["he"]
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
