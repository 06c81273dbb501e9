"""FTL on the UCI credit data, end to end on localhost: PSI, training and scoring over gRPC + mTLS.

    python -m examples.transfer.run_local [--overlap 0.05] [--epochs 30] [--smoke] [--out DIR]

1. Splits the data directory's ``credit_default_taiwan`` into party A (15,000
   customers: credit limit, demographics, latest repayment status, labels) and
   party B (10,000 customers: earlier repayment statuses, bill and payment
   amounts, no labels); ``--overlap`` of B's customers are also A's. B's labels
   go to ``b_truth.csv`` for the final evaluation only.
2. Makes a CA and mTLS certificates, a federation config, starts the router
   (``party.local.LocalFederation``).
3. Starts ``examples.transfer.guest`` (A) and ``examples.transfer.host`` (B) as
   separate processes: PSI on the ID column, FTL training with the cross-party
   terms under CKKS (each party its own keys), then B scores all its rows.
4. Prints the AUC on B's customers that A never saw, next to the overlap-only
   reference (a logistic regression on the overlap rows' B features with their
   labels — what B could do if A handed over those labels).

``--smoke``: 3,000/2,000 customers and 3 epochs (under a minute). The first process
that fails stops the other; the exit code is 0 only if every process succeeded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from party import TesseraError, cli
from party.files import data_dir
from party.local import LocalFederation


def evaluate(work: Path, scores_path: Path) -> dict[str, float]:
    """AUC on B's non-overlap rows, and the overlap-only reference (needs the truth file)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from examples.transfer.task import features

    scores = pd.read_csv(scores_path)
    truth = pd.read_csv(work / "b_truth.csv")
    b = pd.read_csv(work / "b.csv")
    if not (scores["ID"].to_numpy() == truth["ID"].to_numpy()).all():
        raise TesseraError("scores are not in B's row order")
    y = truth["Y"].to_numpy()
    ov = scores["in_overlap"].to_numpy(dtype=bool)
    auc = float(roc_auc_score(y[~ov], scores["score"].to_numpy()[~ov]))
    x = features(b)
    ref = LogisticRegression(max_iter=2000).fit(x[ov], y[ov])
    auc_ref = float(roc_auc_score(y[~ov], ref.decision_function(x[~ov])))
    return {"auc_ftl": auc, "auc_overlap_only": auc_ref, "overlap_rows": int(ov.sum()),
            "scored_unseen_rows": int((~ov).sum())}


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.transfer.run_local", __doc__)
    cli.add_out(ap, help="inputs, certificates, checkpoints, scores, logs (default: temp)")
    ap.add_argument("--data-dir", default=str(data_dir()))
    ap.add_argument("--overlap", type=float, default=0.05, help="fraction of B's rows A also has")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--smoke", action="store_true", help="small data, 3 epochs")
    args = ap.parse_args(argv)
    return cli.run("transfer", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from examples.transfer.task import make_inputs

    epochs = 3 if args.smoke else args.epochs
    with LocalFederation({"a": "party", "b": "party"}, name="ftl-credit", out=args.out,
                         timeout_s=600) as fed:
        paths = make_inputs(Path(args.data_dir), fed.work, overlap=args.overlap,
                            smoke=args.smoke)
        print(f"inputs in {fed.work}: a.csv (A: features + labels), b.csv (B: features), "
              f"b_truth.csv (held out)", flush=True)
        common = ["--config", fed.config, "--out", fed.work, "--epochs", epochs]
        scores = fed.work / "b_scores.csv"
        fed.wait([fed.start("a", "examples.transfer.guest", "--input", paths["a"], *common),
                  fed.start("b", "examples.transfer.host", "--input", paths["b"],
                            "--scores", scores, *common)], timeout_s=3600)
    r = evaluate(fed.work, scores)
    print(f"AUC on B's {r['scored_unseen_rows']} customers A never saw: FTL {r['auc_ftl']:.4f}"
          f" | overlap-only reference ({r['overlap_rows']} labelled overlap rows) "
          f"{r['auc_overlap_only']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
