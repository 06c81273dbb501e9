"""FTL on the UCI credit data, end to end on localhost: PSI, training and scoring over gRPC + mTLS.

    python -m examples.transfer.run_local [--overlap 0.05] [--epochs 30] [--smoke] [--workdir DIR]

1. Splits ``shared/data/credit_default_taiwan`` into party A (15,000 customers:
   credit limit, demographics, latest repayment status, labels) and party B
   (10,000 customers: earlier repayment statuses, bill and payment amounts, no
   labels); ``--overlap`` of B's customers are also
   A's. B's labels go to ``b_truth.csv`` for the final evaluation only.
2. Makes a CA and mTLS certificates, a federation config, starts the router.
3. Starts ``examples.transfer.guest`` (A) and ``examples.transfer.host`` (B) as
   separate processes: PSI on the ID column, FTL training with the cross-party
   terms under CKKS (each party its own keys), then B scores all its rows.
4. Prints the AUC on B's customers that A never saw, next to the overlap-only
   reference (a logistic regression on the overlap rows' B features with their
   labels — what B could do if A handed over those labels).

``--smoke``: 3,000/2,000 customers and 3 epochs (under a minute). Exit code 0
only if every process succeeded.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from party.files import data_dir
from party.local import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]




def evaluate(work: Path, scores_path: Path) -> dict[str, float]:
    """AUC on B's non-overlap rows, and the overlap-only reference (needs the truth file)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from examples.transfer.task import features

    scores = pd.read_csv(scores_path)
    truth = pd.read_csv(work / "b_truth.csv")
    b = pd.read_csv(work / "b.csv")
    if not (scores["ID"].to_numpy() == truth["ID"].to_numpy()).all():
        raise RuntimeError("scores are not in B's row order")
    y = truth["Y"].to_numpy()
    ov = scores["in_overlap"].to_numpy(dtype=bool)
    auc = float(roc_auc_score(y[~ov], scores["score"].to_numpy()[~ov]))
    x = features(b)
    ref = LogisticRegression(max_iter=2000).fit(x[ov], y[ov])
    auc_ref = float(roc_auc_score(y[~ov], ref.decision_function(x[~ov])))
    return {"auc_ftl": auc, "auc_overlap_only": auc_ref, "overlap_rows": int(ov.sum()),
            "scored_unseen_rows": int((~ov).sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", help="inputs, certificates, checkpoints, scores (default: temp)")
    ap.add_argument("--data-dir", default=str(data_dir()))
    ap.add_argument("--overlap", type=float, default=0.05, help="fraction of B's rows A also has")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--smoke", action="store_true", help="small data, 3 epochs")
    args = ap.parse_args(argv)
    from examples.transfer.task import make_inputs
    from party.certs import init_certs
    from party.config import write_federation

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tessera-ftl-"))
    work.mkdir(parents=True, exist_ok=True)
    epochs = 3 if args.smoke else args.epochs
    paths = make_inputs(Path(args.data_dir), work, overlap=args.overlap, smoke=args.smoke)
    print(f"inputs in {work}: a.csv (A: features + labels), b.csv (B: features), "
          f"b_truth.csv (held out)", flush=True)
    init_certs(work / "certs", ["a", "b"], overwrite=True)
    port = free_port()
    cfg = write_federation(work / "fed.toml", name="ftl-credit", router=f"127.0.0.1:{port}",
                           parties={"a": "party", "b": "party"}, timeout_s=600)
    py = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(work / "router.log", "w")  # noqa: SIM115
    router = subprocess.Popen([py, "-m", "party.router", "--config", str(cfg)], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(port, router)
        common = ["--config", str(cfg), "--workdir", str(work), "--epochs", str(epochs)]
        scores = work / "b_scores.csv"
        procs = [
            subprocess.Popen([py, "-m", "examples.transfer.guest", "--input", str(paths["a"]),
                              *common], cwd=ROOT, env=env, start_new_session=True),
            subprocess.Popen([py, "-m", "examples.transfer.host", "--input", str(paths["b"]),
                              "--scores", str(scores), *common], cwd=ROOT, env=env,
                             start_new_session=True),
        ]
        codes = [p.wait(timeout=3600) for p in procs]
        if codes != [0, 0]:
            print(f"FAILED: party exit codes a={codes[0]} b={codes[1]}", flush=True)
            return 1
        r = evaluate(work, scores)
        print(f"AUC on B's {r['scored_unseen_rows']} customers A never saw: FTL {r['auc_ftl']:.4f}"
              f" | overlap-only reference ({r['overlap_rows']} labelled overlap rows) "
              f"{r['auc_overlap_only']:.4f}", flush=True)
        return 0
    finally:
        for p in [*procs, router]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        log.close()
        _ = np


if __name__ == "__main__":
    sys.exit(main())
