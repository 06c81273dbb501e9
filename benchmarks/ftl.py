"""FTL benchmark: AUC on B's unseen customers vs overlap size, HE vs plaintext, time and traffic.

    python -m benchmarks.ftl [--overlaps 0.01,0.05,0.1,0.2] [--steps 600] [--modes he,plain]

UCI credit default split as in ``examples/transfer`` (A: 15,000 customers with X1–X6
and labels; B: 10,000 customers with X7–X23; ``overlap`` of B's customers are A's).
The overlap is joined in the clear here (PSI is benchmarked by ``benchmarks/psi``).
Each run trains about ``--steps`` steps (epochs = steps / steps per epoch, at least 1)
with the default ``FtlParams``; both modes use the same parameters and seeds.

Figures (one JSON line each, via ``benchmarks._emit.emit``):
  ftl_auc_unseen          AUC on B's non-overlap rows (true labels held out), per mode
  ftl_auc_overlap_only    reference: logistic regression on the overlap rows' B features
                          with their labels (what B could do if A gave it those labels)
  ftl_auc_guest_own       reference: A's own logistic regression on A's rows (80/20 split)
  ftl_epoch_s             seconds per epoch, per mode (HE: both parties in one process,
                          each in its own thread with one torch thread, as the plaintext
                          run; in-memory transport; wall clock)
  ftl_epoch_mb            MB per epoch on the wire (HE; plaintext mode is centralised: 0)
  ftl_he_vs_plain_auc_diff, ftl_he_vs_plain_max_loss_diff   (threats.md row 40)
  ftl_he_epoch_ratio      HE epoch seconds / plaintext epoch seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from benchmarks._emit import emit
from party.files import data_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = data_dir()
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--overlaps", default="0.01,0.05,0.1,0.2")
    ap.add_argument("--steps", type=int, default=600, help="training steps per run (about)")
    ap.add_argument("--modes", default="he,plain")
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("--params", default="{}",
                    help='FtlParams fields to override, as JSON (e.g. \'{"lr_decay": false}\')')
    ap.add_argument("--cv", type=int, default=0, metavar="K",
                    help="instead: K-fold cross-validation on the overlap rows only (plaintext; "
                         "how the defaults were chosen; B's other rows are not read)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = json.loads(args.params)
    if not isinstance(overrides, dict):
        raise SystemExit("--params must be a JSON object")

    modes = args.modes.split(",")
    for frac in (float(f) for f in args.overlaps.split(",")):
        if args.cv:
            run_cv(frac, Path(args.data_dir), args.steps, overrides, args.cv)
        else:
            run_one(frac, Path(args.data_dir), args.steps, modes, overrides)
    return 0


def _credit(frac: float, data_dir: Path) -> tuple[Any, ...]:
    from ftl.data import CREDIT_FILE, overlap_by_ids, preprocess, split_credit

    sp = split_credit(data_dir / CREDIT_FILE, overlap_frac=frac, seed=0)
    gx = preprocess(sp.guest[sp.guest_columns].to_numpy(dtype=np.float64))
    gy = sp.guest["Y"].to_numpy(dtype=np.float64)
    hx = preprocess(sp.host[sp.host_columns].to_numpy(dtype=np.float64))
    hy = sp.host_truth["Y"].to_numpy()
    g_ov, h_ov = overlap_by_ids(sp.guest["ID"].tolist(), sp.host["ID"].tolist())
    return gx, gy, hx, hy, g_ov, h_ov


def _params(n_overlap: int, steps: int, overrides: dict[str, Any]) -> Any:
    from ftl import FtlParams
    from ftl.model import epoch_batches

    base = FtlParams(**overrides)
    spe = len(epoch_batches(n_overlap, base, 0))
    return FtlParams(**{**overrides, "epochs": max(1, round(steps / spe))}), spe


def run_cv(frac: float, data_dir: Path, steps: int, overrides: dict[str, Any], k: int) -> None:
    """Model selection without the evaluation rows: K folds of the overlap.

    Each fold's overlap customers are removed from A's labelled rows and from the
    overlap; FTL (plaintext) is trained on the rest and B scores the held-out overlap
    rows; so is the overlap-only logistic regression. Figures: pooled AUC over the
    overlap rows (labels A holds), for FTL and for the reference.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from ftl import train_plaintext
    from ftl.data import GuestData, HostData

    gx, gy, hx, _hy, g_ov, h_ov = _credit(frac, data_dir)
    folds = np.array_split(np.random.default_rng([0, 99]).permutation(g_ov.size), k)
    pred_f, pred_r = np.zeros(g_ov.size), np.zeros(g_ov.size)
    for f in folds:
        tr = np.setdiff1d(np.arange(g_ov.size), f)
        params, _ = _params(tr.size, steps, overrides)
        keep = np.ones(len(gx), dtype=bool)
        keep[g_ov[f]] = False
        remap = np.full(len(gx), -1)
        remap[keep] = np.arange(int(keep.sum()))
        res = train_plaintext(GuestData(gx[keep], gy[keep], remap[g_ov[tr]]),
                              HostData(hx, h_ov[tr]), params)
        pred_f[f] = res.predict(hx[h_ov[f]])
        ref = LogisticRegression(max_iter=2000).fit(hx[h_ov[tr]], gy[g_ov[tr]])
        pred_r[f] = ref.decision_function(hx[h_ov[f]])
    y = gy[g_ov]
    cond = {"overlap": frac, "overlap_rows": int(g_ov.size), "folds": k, "steps": steps,
            "params": overrides}
    emit("ftl_cv_auc_overlap", round(float(roc_auc_score(y, pred_f)), 4), "AUC", mode="plain",
         **cond)
    emit("ftl_cv_auc_overlap_only_ref", round(float(roc_auc_score(y, pred_r)), 4), "AUC", **cond)


def _one_thread(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """Run ``fn`` with one torch (OpenMP) thread in the calling thread.

    ``torch.set_num_threads`` in the main thread does not reach ``run_parties``' worker
    threads: without this each party ran torch with the default thread count, whose
    spinning workers fought the other party for the two cores (the HE epoch measured
    1.5× slower than its work). The plaintext run uses one thread too.
    """
    def run(p: Any) -> T:
        torch.set_num_threads(1)
        return fn(p)
    return run


def run_one(frac: float, data_dir: Path, steps: int, modes: list[str],
            overrides: dict[str, Any]) -> None:
    """All figures for one overlap fraction."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from ftl import predict_ftl, train_ftl, train_plaintext
    from ftl.data import GuestData, HostData
    from party.testing import run_parties

    gx, gy, hx, hy, g_ov, h_ov = _credit(frac, data_dir)
    unseen = np.ones(len(hx), dtype=bool)
    unseen[h_ov] = False
    params, spe = _params(g_ov.size, steps, overrides)
    epochs = params.epochs
    cond = {"overlap": frac, "overlap_rows": int(g_ov.size), "guest_rows": len(gx),
            "host_rows": len(hx), "epochs": epochs, "steps_per_epoch": spe,
            "dim": params.dim, "batch_size": params.batch_size, "params": overrides,
            "load_avg_1m": round(os.getloadavg()[0], 2)}

    ref = LogisticRegression(max_iter=2000).fit(hx[h_ov], hy[h_ov])
    emit("ftl_auc_overlap_only", round(float(roc_auc_score(hy[unseen], ref.decision_function(hx[unseen]))), 4),
         "AUC", **cond)
    cut = int(0.8 * len(gx))
    own = LogisticRegression(max_iter=2000).fit(gx[:cut], gy[:cut])
    emit("ftl_auc_guest_own", round(float(roc_auc_score(gy[cut:], own.decision_function(gx[cut:]))), 4),
         "AUC", **cond)

    plain = None
    if "plain" in modes:
        t0 = time.perf_counter()
        plain = train_plaintext(GuestData(gx, gy, g_ov), HostData(hx, h_ov), params)
        plain_s = (time.perf_counter() - t0) / epochs
        auc_p = float(roc_auc_score(hy[unseen], plain.predict(hx)[unseen]))
        emit("ftl_auc_unseen", round(auc_p, 4), "AUC", mode="plain", **cond)
        emit("ftl_epoch_s", round(plain_s, 4), "s", mode="plain", **cond)
        emit("ftl_epoch_mb", 0.0, "MB", mode="plain", note="centralised reference", **cond)
    if "he" in modes:
        out = run_parties({
            "A": _one_thread(lambda p: train_ftl(p, "B", role="guest", x=gx, y=gy, overlap=g_ov,
                                                 params=params)),
            "B": _one_thread(lambda p: train_ftl(p, "A", role="host", x=hx, overlap=h_ov,
                                                 params=params)),
        }, timeout_s=7200)
        a = out["A"]
        t0 = time.perf_counter()
        scores = run_parties({
            "A": lambda p: predict_ftl(p, "B", role="guest", model=a.model),
            "B": lambda p: predict_ftl(p, "A", role="host", model=out["B"].model, x=hx),
        })["B"]
        pred_s = time.perf_counter() - t0
        auc_h = float(roc_auc_score(hy[unseen], scores[unseen]))
        he_s = float(np.mean(a.epoch_seconds))
        emit("ftl_auc_unseen", round(auc_h, 4), "AUC", mode="he", **cond)
        emit("ftl_epoch_s", round(he_s, 4), "s", mode="he", **cond)
        emit("ftl_epoch_mb", round(float(np.mean(a.epoch_bytes)) / 1e6, 3), "MB", mode="he",
             **cond)
        emit("ftl_predict_s", round(pred_s, 3), "s", mode="he", rows=len(hx), **cond)
        if plain is not None:
            emit("ftl_he_vs_plain_auc_diff", round(abs(auc_h - auc_p), 6), "AUC", **cond)
            emit("ftl_he_vs_plain_max_loss_diff",
                 float(np.abs(np.array(a.epoch_losses) - np.array(plain.epoch_losses)).max()),
                 "loss", **cond)
            emit("ftl_he_epoch_ratio", round(he_s / plain_s, 2), "x", **cond)

if __name__ == "__main__":
    raise SystemExit(main())
