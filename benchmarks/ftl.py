"""FTL benchmark: AUC on B's unseen customers vs overlap size, HE vs plaintext, time and traffic.

    python -m benchmarks.ftl [--overlaps 0.01,0.05,0.1,0.2] [--steps 600] [--modes he,plain]
    python -m benchmarks.ftl --task vehicle --overlaps 0.224      # multi-class (4 classes)
    python -m benchmarks.ftl --cv 5 [--params JSON]               # model selection (overlap only)

UCI credit default split as in ``examples/transfer`` (A: 15,000 customers with X1–X6
and labels; B: 10,000 customers with X7–X23; ``overlap`` of B's customers are A's).
The overlap is joined in the clear here (PSI is benchmarked by ``benchmarks/psi``).
Each run trains about ``--steps`` steps (epochs = steps / steps per epoch, at least 1)
with the default ``FtlParams`` (plus ``--params``); both modes use the same parameters
and seeds. ``--task vehicle``: FATE's vehicle silhouettes (4 classes; A 500 customers
with the guest features and labels, B 446 with the host features), multi-class FTL
(one-vs-rest), accuracy instead of AUC.

Figures (one JSON line each, via ``benchmarks._emit.emit``; conditions carry the
1-minute load average at the start of each overlap):
  ftl_auc_unseen          AUC on B's non-overlap rows (true labels held out), per mode
  ftl_auc_overlap_only    reference: logistic regression on the overlap rows' B features
                          with their labels (what B could do if A gave it those labels)
  ftl_auc_guest_own       reference: A's own logistic regression on A's rows (80/20 split)
                          (``ftl_acc_*`` for ``--task vehicle``)
  ftl_epoch_s             seconds per epoch, per mode (HE: both parties in one process,
                          each in its own thread with one torch thread, as the plaintext
                          run; in-memory transport; wall clock)
  ftl_epoch_mb            MB per epoch on the wire (HE; plaintext mode is centralised: 0)
  ftl_he_vs_plain_auc_diff, ftl_he_vs_plain_max_loss_diff (per epoch),
  ftl_he_vs_plain_max_score_diff (B's logits)              (threats.md row 40)
  ftl_he_epoch_ratio      HE epoch seconds / plaintext epoch seconds
  ftl_cv_auc_overlap, ftl_cv_auc_overlap_only_ref   ``--cv``: pooled AUC of K-fold CV over
                          the overlap rows (how the defaults were chosen)
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
    ap.add_argument("--task", choices=["credit", "vehicle"], default="credit",
                    help="credit: binary (AUC); vehicle: FATE's 4-class vehicle split, "
                         "multi-class FTL (accuracy)")
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
        if args.cv and args.task == "credit":
            run_cv(frac, Path(args.data_dir), args.steps, overrides, args.cv)
        else:
            run_one(frac, Path(args.data_dir), args.steps, modes, overrides, args.task)
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


#: multi-class defaults for ``--task vehicle`` (overridable with ``--params``): 4 classes;
#: the credit defaults' l2 = 0.1 collapses the 4 one-vs-rest scores (features in [−1, 1]).
VEHICLE_PARAMS: dict[str, Any] = {"n_classes": 4, "dim": 8, "l2": 0.001, "lr": 0.1}


def _vehicle(frac: float, data_dir: Path) -> tuple[Any, ...]:
    """FATE's vehicle split for transfer: A 500 customers (guest features, 4 classes), B 446
    (host features), ``round(frac·446)`` of them A's."""
    from ftl.data import VEHICLE_GUEST, VEHICLE_HOST, overlap_by_ids, split_hetero

    sp = split_hetero(data_dir / VEHICLE_GUEST, data_dir / VEHICLE_HOST, n_guest=500,
                      n_host=446, n_overlap=max(1, round(frac * 446)), seed=0)
    gx = sp.guest[sp.guest_columns].to_numpy(dtype=np.float64)
    gy = sp.guest["y"].to_numpy(dtype=np.float64)
    hx = sp.host[sp.host_columns].to_numpy(dtype=np.float64)
    hy = sp.host_truth["y"].to_numpy()
    g_ov, h_ov = overlap_by_ids(sp.guest["id"].tolist(), sp.host["id"].tolist())
    return gx, gy, hx, hy, g_ov, h_ov


def run_one(frac: float, data_dir: Path, steps: int, modes: list[str],
            overrides: dict[str, Any], task: str = "credit") -> None:
    """All figures for one overlap fraction.

    ``credit``: binary, AUC. ``vehicle``: 4 classes (one-vs-rest), accuracy (argmax).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from ftl import predict_ftl, train_ftl, train_plaintext
    from ftl.data import GuestData, HostData
    from party.testing import run_parties

    if task == "vehicle":
        gx, gy, hx, hy, g_ov, h_ov = _vehicle(frac, data_dir)
        overrides = {**VEHICLE_PARAMS, **overrides}
        metric, unit = "acc", "accuracy"

        def score(y: Any, s: Any) -> float:
            return float((np.asarray(s).argmax(axis=1) == y).mean())
    else:
        gx, gy, hx, hy, g_ov, h_ov = _credit(frac, data_dir)
        metric, unit = "auc", "AUC"

        def score(y: Any, s: Any) -> float:
            return float(roc_auc_score(y, s))

    unseen = np.ones(len(hx), dtype=bool)
    unseen[h_ov] = False
    params, spe = _params(g_ov.size, steps, overrides)
    epochs = params.epochs
    cond = {"task": task, "overlap": frac, "overlap_rows": int(g_ov.size),
            "guest_rows": len(gx), "host_rows": len(hx), "epochs": epochs,
            "steps_per_epoch": spe, "dim": params.dim, "batch_size": params.batch_size,
            "params": overrides, "load_avg_1m": round(os.getloadavg()[0], 2)}

    def scores_of(model: Any, x: Any) -> Any:
        return model.decision_function(x)

    ref = LogisticRegression(max_iter=5000).fit(hx[h_ov], hy[h_ov])
    emit(f"ftl_{metric}_overlap_only", round(score(hy[unseen], scores_of(ref, hx[unseen])), 4),
         unit, **cond)
    cut = int(0.8 * len(gx))
    own = LogisticRegression(max_iter=5000).fit(gx[:cut], gy[:cut])
    emit(f"ftl_{metric}_guest_own", round(score(gy[cut:], scores_of(own, gx[cut:])), 4), unit,
         **cond)

    plain = None
    if "plain" in modes:
        t0 = time.perf_counter()
        plain = train_plaintext(GuestData(gx, gy, g_ov), HostData(hx, h_ov), params)
        plain_s = (time.perf_counter() - t0) / epochs
        m_p = score(hy[unseen], plain.predict(hx)[unseen])
        emit(f"ftl_{metric}_unseen", round(m_p, 4), unit, mode="plain", **cond)
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
            "A": _one_thread(lambda p: predict_ftl(p, "B", role="guest", model=a.model)),
            "B": _one_thread(lambda p: predict_ftl(p, "A", role="host", model=out["B"].model,
                                                   x=hx)),
        })["B"]
        pred_s = time.perf_counter() - t0
        m_h = score(hy[unseen], scores[unseen])
        he_s = float(np.mean(a.epoch_seconds))
        emit(f"ftl_{metric}_unseen", round(m_h, 4), unit, mode="he", **cond)
        emit("ftl_epoch_s", round(he_s, 4), "s", mode="he", **cond)
        emit("ftl_epoch_mb", round(float(np.mean(a.epoch_bytes)) / 1e6, 3), "MB", mode="he",
             **cond)
        emit("ftl_predict_s", round(pred_s, 3), "s", mode="he", rows=len(hx), **cond)
        if plain is not None:
            emit(f"ftl_he_vs_plain_{metric}_diff", round(abs(m_h - m_p), 6), unit, **cond)
            emit("ftl_he_vs_plain_max_loss_diff",
                 float(np.abs(np.array(a.epoch_losses) - np.array(plain.epoch_losses)).max()),
                 "loss", per="epoch", **cond)
            emit("ftl_he_vs_plain_max_score_diff",
                 float(np.abs(np.asarray(scores) - np.asarray(plain.predict(hx))).max()),
                 "logit", **cond)
            emit("ftl_he_epoch_ratio", round(he_s / plain_s, 2), "x", **cond)
    emit("ftl_load_avg_end", round(os.getloadavg()[0], 2), "load", **cond)


if __name__ == "__main__":
    raise SystemExit(main())
