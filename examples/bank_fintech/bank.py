"""The bank: active party (labels + its own features) of the vertical FL demo.

    python -m examples.bank_fintech.bank --config fed.toml --party bank \
        --data bank_aligned.csv --out out/bank [--compare] [--epochs 8]

Reads its PSI-aligned CSV (``python -m vfl.align`` first), holds out 20% of the
shared customers for testing (seed shared with the fintech), trains the split
model with the fintech over the federation (HE mode: the fintech's activations
only ever arrive CKKS-encrypted; see vfl/he/layer.py), scores the test rows,
saves its part of the model (and its preprocessing), writes the evaluation report of the
HE model (``report_he/``: AUC, KS, ROC/KS/lift/gains PNG + JSON), and with ``--compare`` also
trains the same model in plaintext mode and alone (bank-only) for the report
(``report.json``).

Later, in a new process, score aligned rows with the saved halves (no retraining;
the fintech runs ``fintech.py --score`` at the same time):

    python -m examples.bank_fintech.bank --score --config fed.toml --party bank \
        --data bank_aligned.csv --out out/bank [--mode he] [--held-out]

It loads ``OUT/bank_model_MODE.pt`` and ``OUT/bank_preprocess.json``, writes
``OUT/scores_MODE.csv`` (id, probability of default) and a summary
``OUT/scores_MODE.json``, and, if the data has the label column, prints AUC and KS.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from examples.bank_fintech.common import (
    parser,
    progress_printer,
    run,
    score_config,
    scoring_rows,
)
from examples.bank_fintech.task import (
    Preprocessor,
    bank_model,
    by_id,
    read_table,
    test_split,
    train_bank_only,
)
from party.files import write_atomic
from vfl.boost.evaluation import write_report
from vfl.split import binary_metrics
from vfl.trainer import ActiveTrainer, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    ap = parser("bank", __doc__ or "")
    ap.add_argument("--label", default="y")
    ap.add_argument("--passive", default="fintech", help="the passive party's name")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--val-fraction", type=float, default=TrainConfig().val_fraction,
                    help="training rows held out for early stopping (0: none; every epoch is run "
                         "and the last one kept)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run("bank", args, train=train, score=score)


def score(party: Any, args: Any) -> dict[str, Any]:
    """Load the saved half and preprocessing, score the aligned rows with the fintech."""
    with open(args.data, newline="") as f:
        has_label = args.label in next(csv.reader(f), [])
    tab = by_id(read_table(args.data, id_column=args.id_column, label=args.label if has_label else None))
    model_file, rows, xs = scoring_rows("bank", args, tab)
    ids = [tab.ids[i] for i in rows]
    trainer = ActiveTrainer.load_model(model_file, party, bank_model(xs.shape[1]),
                                       config=score_config(args))
    print(f"[bank] loaded {model_file} (model {trainer.run_id}); scoring {len(ids)} "
          f"customers with {', '.join(trainer.passives)} ({args.mode} mode)", flush=True)
    t0 = time.perf_counter()
    prob = trainer.predict(xs, ids=ids)
    dt = time.perf_counter() - t0
    out = Path(args.out) / f"scores_{args.mode}.csv"
    lines = ["id,score"] + [f"{i},{p:.6f}" for i, p in zip(ids, prob, strict=True)]
    write_atomic(out, "\n".join(lines) + "\n")
    result: dict[str, Any] = {"rows": len(ids), "seconds": round(dt, 2), "scores": str(out)}
    msg = f"[bank] scored {len(ids)} customers in {dt:.1f} s -> {out}"
    if tab.y is not None:
        m = binary_metrics(tab.y[rows], prob)
        result.update({f"{k}": round(v, 4) for k, v in m.items()})
        msg += f"; AUC {m['auc']:.4f} (KS {m['ks']:.3f})"
    print(msg, flush=True)
    result.update(model=trainer.run_id, mode=args.mode, held_out=bool(args.held_out))
    write_atomic(Path(args.out) / f"scores_{args.mode}.json", json.dumps(result, indent=2) + "\n")
    return result


def train(party: Any, args: Any) -> int:
    """Train (HE, and with --compare plaintext + bank-only), score the held-out rows, save."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tab = by_id(read_table(args.data, id_column=args.id_column, label=args.label))
    assert tab.y is not None
    n = min(args.rows or len(tab.ids), len(tab.ids))
    ids, x, y = tab.ids[:n], tab.x[:n], tab.y[:n]
    tr, te = test_split(n, seed=args.seed)
    pre = Preprocessor().fit(x[tr])  # fitted on our own training rows only
    xs = pre.transform(x)
    write_atomic(out / "bank_preprocess.json", pre.to_json() + "\n")  # for --score later
    ids_tr, ids_te = [ids[i] for i in tr], [ids[i] for i in te]
    print(f"[bank] {n} aligned customers: {len(tr)} for training, {len(te)} held out; "
          f"{xs.shape[1]} model inputs from {x.shape[1]} columns", flush=True)
    results: dict[str, Any] = {}
    modes = ["he", "plaintext"] if args.compare else ["he"]
    for mode in modes:
        cfg = TrainConfig(mode=mode, epochs=args.epochs, batch_size=args.batch_size,
                          patience=args.patience, val_fraction=args.val_fraction,
                          seed=args.seed, session=f"demo-{mode}",
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
        if mode == "he":  # the evaluation report banks expect (PNG + JSON), as SecureBoost's
            write_report(y[te], prob, out / "report_he", name="split NN, HE (bank + fintech)")
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
                               val_fraction=args.val_fraction, patience=args.patience)
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
