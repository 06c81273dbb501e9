"""The bank: active party (labels + its own features) of the vertical FL demo.

    python -m examples.bank_fintech.bank --config fed.toml --party bank \
        --data bank_aligned.csv --out out/bank [--compare] [--epochs 8]

Reads its PSI-aligned CSV (``python -m vfl.align`` first), holds out 20% of the
shared customers for testing (seed shared with the fintech), trains the split
model with the fintech over the federation (HE mode: the fintech's activations
only ever arrive CKKS-encrypted; see vfl/he/layer.py), scores the test rows,
saves its part of the model, and with ``--compare`` also trains the same model
in plaintext mode and alone (bank-only) for the report (``report.json``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from examples.bank_fintech.common import fail, parser, progress_printer
from examples.bank_fintech.task import (
    Preprocessor,
    bank_model,
    read_table,
    test_split,
    train_bank_only,
)
from party.errors import TesseraError
from party.files import write_atomic
from vfl.split import binary_metrics
from vfl.trainer import ActiveTrainer, TrainConfig


def main(argv: list[str] | None = None) -> int:
    ap = parser("bank", __doc__ or "")
    ap.add_argument("--label", default="y")
    ap.add_argument("--passive", default="fintech", help="the passive party's name")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--patience", type=int, default=3)
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (TesseraError, ValueError, OSError) as e:
        return fail("bank", e)


def run(args: Any) -> int:
    import torch

    from party.config import load_federation
    from party.grpc_transport import connect

    torch.set_num_threads(1)  # tiny models; SEAL dominates and the peer needs the other core
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tab = read_table(args.data, id_column=args.id_column, label=args.label)
    assert tab.y is not None
    n = min(args.rows or len(tab.ids), len(tab.ids))
    ids, x, y = tab.ids[:n], tab.x[:n], tab.y[:n]
    tr, te = test_split(n, seed=args.seed)
    pre = Preprocessor().fit(x[tr])  # fitted on our own training rows only
    xs = pre.transform(x)
    ids_tr, ids_te = [ids[i] for i in tr], [ids[i] for i in te]
    print(f"[bank] {n} aligned customers: {len(tr)} for training, {len(te)} held out; "
          f"{xs.shape[1]} model inputs from {x.shape[1]} columns", flush=True)
    fed = load_federation(args.config)
    results: dict[str, Any] = {}
    modes = ["he", "plaintext"] if args.compare else ["he"]
    with connect(fed, args.party) as party:
        for mode in modes:
            cfg = TrainConfig(mode=mode, epochs=args.epochs, batch_size=args.batch_size,
                              patience=args.patience, seed=args.seed, session=f"demo-{mode}",
                              checkpoint_dir=str(out / f"checkpoints-{mode}"),
                              timeout_s=args.timeout_s)
            trainer = ActiveTrainer(party, [args.passive], bank_model(xs.shape[1]), xs[tr], y[tr],
                                    ids=ids_tr, config=cfg,
                                    on_event=progress_printer(mode, args.progress))
            before = party.transport.stats.snapshot()
            t0 = time.perf_counter()
            res = trainer.fit()
            t_train = time.perf_counter() - t0
            t1 = time.perf_counter()
            prob = trainer.predict(xs[te], ids=ids_te)
            t_score = time.perf_counter() - t1
            after = party.transport.stats.snapshot()
            trainer.save_model(out / f"bank_model_{mode}.pt")
            m = binary_metrics(y[te], prob)
            results[mode] = {
                **{f"test_{k}": round(v, 4) for k, v in m.items()},
                "epochs_run": len(res.history), "best_epoch": res.best_epoch,
                "resumed_from_epoch": res.resumed_from,
                "train_seconds": round(t_train, 1), "score_seconds": round(t_score, 2),
                "mb_sent": round((after["bytes_sent"] - before["bytes_sent"]) / 1e6, 1),
                "mb_received": round((after["bytes_received"] - before["bytes_received"]) / 1e6, 1),
            }
            print(f"[bank] {mode}: test AUC {m['auc']:.4f} (KS {m['ks']:.3f}) after "
                  f"{len(res.history)} epochs in {t_train:.0f} s", flush=True)
    if args.compare:
        t0 = time.perf_counter()
        prob = train_bank_only(xs[tr], y[tr], xs[te], epochs=args.epochs,
                               batch_size=args.batch_size, lr=TrainConfig().lr, seed=args.seed,
                               val_fraction=TrainConfig().val_fraction, patience=args.patience)
        m = binary_metrics(y[te], prob)
        results["bank_only"] = {**{f"test_{k}": round(v, 4) for k, v in m.items()},
                                "train_seconds": round(time.perf_counter() - t0, 1)}
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    report = {"customers": n, "train_rows": len(tr), "test_rows": len(te), "results": results,
              "bank_peak_rss_mb": round(rss, 1)}
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    r = report["results"]
    print("\n  model                      test AUC     KS    train s   MB sent (bank)")
    names = {"he": "split model, HE (CKKS)", "plaintext": "split model, plaintext",
             "bank_only": "bank features only"}
    for key in ("he", "plaintext", "bank_only"):
        if key in r:
            v = r[key]
            mb = f"{v['mb_sent']:>8.1f}" if "mb_sent" in v else "       -"
            print(f"  {names[key]:<26} {v['test_auc']:.4f}   {v['test_ks']:.3f}  "
                  f"{v['train_seconds']:>8.1f}   {mb}")
    if "he" in r and "plaintext" in r:
        gap = abs(r["he"]["test_auc"] - r["plaintext"]["test_auc"])
        print(f"\n  |AUC(HE) - AUC(plaintext)| = {gap:.4f}")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
