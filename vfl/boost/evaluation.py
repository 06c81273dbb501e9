"""The evaluation report banks expect: AUC, KS, ROC / KS / lift / gains curves, feature importance.

Computed at the active party only, from its labels and the joint scores (which it alone
holds after scoring), so it reveals nothing of a passive party's data; the same functions
serve the split NN (``vfl.ActiveTrainer.predict``) and SecureBoost. Feature importance is per
party: the active party's own features by name; a passive party's as one total per party at
the active party, by feature name only at that passive party (from the per-record gains and
split counts it receives at the end of training), so no threshold or feature identity moves.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from party.errors import ConfigError
from party.files import atomic_path, write_atomic
from vfl.metrics import auc, check_scores, ks, roc


def lift_gains(y: Any, s: Any, n_bins: int = 10) -> dict[str, list[float]]:
    """Per score decile (highest first): share of rows, cumulative gains, lift and cumulative lift."""
    ya, sa = check_scores(y, s)
    o = np.argsort(-sa, kind="mergesort")
    parts = np.array_split(ya[o], n_bins)
    rate = ya.mean()
    ev = np.array([p.sum() for p in parts])
    cnt = np.array([len(p) for p in parts])
    cum_ev, cum_n = np.cumsum(ev), np.cumsum(cnt)
    return {"depth": (cum_n / len(ya)).tolist(), "gains": (cum_ev / ya.sum()).tolist(),
            "lift": ((ev / np.maximum(cnt, 1)) / rate).tolist(), "cum_lift": ((cum_ev / cum_n) / rate).tolist()}


def report(y: Any, s: Any, *, name: str = "model") -> dict[str, Any]:
    fpr, tpr, thr = roc(y, s)
    step = max(1, len(fpr) // 200)  # at most ~200 curve points in the JSON
    keep = np.r_[np.arange(0, len(fpr), step), len(fpr) - 1]
    ya = np.asarray(y, dtype=np.float64)
    return {"model": name, "rows": len(ya), "positives": int(ya.sum()), "auc": auc(y, s), "ks": ks(y, s),
            "roc": {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
                    "threshold": [float(t) if np.isfinite(t) else None for t in thr[keep]]},
            "ks_curve": {"threshold": [float(t) if np.isfinite(t) else None for t in thr[keep]],
                         "tpr": tpr[keep].tolist(), "fpr": fpr[keep].tolist()},
            **lift_gains(y, s)}


def write_report(y: Any, s: Any, out_dir: str | os.PathLike[str], *, name: str = "model",
                 importance: dict[str, Any] | None = None) -> dict[str, Any]:
    """``report.json`` plus ``roc.png``, ``ks.png``, ``lift.png``, ``gains.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report(y, s, name=name)
    if importance is not None:
        r["importance"] = importance
    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "report.json"), json.dumps(r, indent=1))
    fpr, tpr = np.array(r["roc"]["fpr"]), np.array(r["roc"]["tpr"])
    figs = {
        "roc": (fpr, tpr, "false positive rate", "true positive rate", f"ROC (AUC {r['auc']:.4f})"),
        "gains": (np.r_[0, r["depth"]], np.r_[0, r["gains"]], "share of customers (by score)", "share of defaults",
                  "cumulative gains"),
        "lift": (np.array(r["depth"]), np.array(r["cum_lift"]), "share of customers (by score)",
                 "cumulative lift", "lift"),
    }
    for key, (xv, yv, xl, yl, title) in figs.items():
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(xv, yv, marker="." if key != "roc" else None)
        if key in ("roc", "gains"):
            ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{name}: {title}")
        _save(fig, os.path.join(out_dir, f"{key}.png"))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.linspace(0, 1, len(tpr)), tpr, label="TPR")
    ax.plot(np.linspace(0, 1, len(fpr)), fpr, label="FPR")
    ax.set_title(f"{name}: KS {r['ks']:.3f}")
    ax.legend()
    _save(fig, os.path.join(out_dir, "ks.png"))
    plt.close(fig)
    return r


def _save(fig: Any, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def importance_active(model: Any, feature_names: list[str]) -> dict[str, Any]:
    """The active party's view: its features by name; each passive party as one total."""
    own: dict[str, dict[str, float]] = {}
    per_party: dict[str, dict[str, float]] = {}
    for tree in model.trees:
        for nd in tree:
            if nd.is_leaf:
                continue
            if nd.owner in model.passives:
                e = per_party.setdefault(nd.owner, {"splits": 0, "gain": 0.0})
            else:
                f, _b = model.table[nd.record]
                e = own.setdefault(feature_names[f], {"splits": 0, "gain": 0.0})
            e["splits"] += 1
            e["gain"] += nd.gain
    return {"own_features": own, "passive_parties": per_party}


def importance_passive(booster: Any, feature_names: list[str]) -> dict[str, dict[str, float]]:
    """A passive party's view of its own features (from the gains the active party sent at the end)."""
    out: dict[str, dict[str, float]] = {}
    for rid, (f, _b, _t) in booster.table.items():
        e = out.setdefault(feature_names[f], {"splits": 0, "gain": 0.0})
        e["splits"] += booster.record_count.get(rid, 0)
        e["gain"] += booster.record_gain.get(rid, 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m vfl.boost.evaluation --scores S.csv --labels L.csv --out DIR``: the report for any
    model's scores (e.g. the split NN demo's ``scores_he.csv``), joined to the labels by ID, at the
    label holder."""
    import argparse
    import sys

    import pandas as pd

    from party.errors import TesseraError

    ap = argparse.ArgumentParser(description="AUC, KS, ROC/KS/lift/gains (PNG + JSON) for scored customers")
    ap.add_argument("--scores", required=True, help="CSV with an ID column and a score column")
    ap.add_argument("--labels", required=True, help="the label holder's CSV with the ID and 0/1 label columns")
    ap.add_argument("--id-column", default="id")
    ap.add_argument("--score-column", default="score")
    ap.add_argument("--label-column", default="y")
    ap.add_argument("--name", default="model")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        try:
            s = pd.read_csv(a.scores, dtype={a.id_column: str})
            lab = pd.read_csv(a.labels, dtype={a.id_column: str})
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the inputs: {e}") from e
        for df, col, f in ((s, a.id_column, a.scores), (s, a.score_column, a.scores), (lab, a.id_column, a.labels),
                           (lab, a.label_column, a.labels)):
            if col not in df.columns:
                raise ConfigError(f"{f} has no column {col!r} (columns: {list(df.columns)[:8]})")
        j = s[[a.id_column, a.score_column]].merge(lab[[a.id_column, a.label_column]], on=a.id_column, how="inner")
        if len(j) == 0:
            raise ConfigError("no scored ID has a label")
        r = write_report(j[a.label_column].to_numpy(), j[a.score_column].to_numpy(), a.out, name=a.name)
    except TesseraError as e:
        print(f"vfl.boost.evaluation: {e}", file=sys.stderr)
        return 2
    print(f"{a.name}: {r['rows']} customers, AUC {r['auc']:.4f}, KS {r['ks']:.3f} -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
