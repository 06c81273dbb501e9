"""SecureBoost over HE (vfl.boost) against plaintext XGBoost on FATE's default_credit hetero split.

    .venv/bin/python -m benchmarks.boost                 # 20 trees, depth 5, 32 bins, lr 0.3, 24k/6k rows
    .venv/bin/python -m benchmarks.boost --trees 3 --rows 6000
    .venv/bin/python -m benchmarks.boost --compare-he    # OU vs Paillier vs CKKS vs phe on the histogram kernel

Guest (bank): 13 features + label; host (fintech): 10 features; the same 80/20 split as
``benchmarks.vfl`` (``examples.bank_fintech.task.test_split``). Both parties run in this process
(threads over the in-memory transport), so ``boost_peak_rss_mb_per_party`` is the peak of the
process holding both, an upper bound per party. XGBoost gets the joined raw table with the
same hyper-parameters (``tree_method=hist``, ``max_bin=32``, same base score). Figures:
``boost_auc_he``, ``boost_auc_xgboost``, ``boost_auc_gap``, ``boost_s_per_tree_he``,
``boost_xgboost_fit_s``, ``boost_he_vs_xgboost_tree_ratio``, ``boost_mb_per_tree``,
``boost_peak_rss_mb_per_party``, ``woe_iv_s``; with ``--compare-he``: ``boost_he_kernel_s``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

from benchmarks._emit import emit, peak_rss_mb
from examples.bank_fintech.task import test_split
from party.files import data_dir
from party.testing import run_parties
from vfl.boost import Binner, BoostParams
from vfl.boost.evaluation import auc
from vfl.boost.runner import predict_active, predict_passive, train_active, train_passive
from vfl.boost.woe import run_woe_active, run_woe_passive


def load(rows: int | None) -> dict[str, Any]:
    g = np.loadtxt(data_dir() / "fate" / "default_credit_hetero_guest.csv", delimiter=",", skiprows=1)
    h = np.loadtxt(data_dir() / "fate" / "default_credit_hetero_host.csv", delimiter=",", skiprows=1)
    assert (g[:, 0] == h[:, 0]).all()
    n = rows or len(g)
    tr, te = test_split(n)
    return {"y": g[:n, 1], "xa": g[:n, 2:], "xp": h[:n, 1:], "tr": tr, "te": te}


def run_tessera(d: dict[str, Any], p: BoostParams, scheme: str) -> dict[str, Any]:
    tr, te = d["tr"], d["te"]
    bina, binp = Binner.fit(d["xa"][tr], max_bin=p.max_bin), Binner.fit(d["xp"][tr], max_bin=p.max_bin)
    out: dict[str, Any] = {}

    def bank(party: Any) -> Any:
        t0 = time.perf_counter()
        m = train_active(party, ["fintech"], bina.transform(d["xa"][tr]), d["y"][tr], p, scheme=scheme)
        out["train_s"] = time.perf_counter() - t0
        out["tree_s"] = list(m.tree_seconds)
        out["bank_sent"] = party.transport.stats.bytes_sent
        out["bank_recv"] = party.transport.stats.bytes_received
        return predict_active(party, m, bina.transform(d["xa"][te]))

    def fintech(party: Any) -> None:
        b = train_passive(party, "bank", binp.transform(d["xp"][tr]))
        predict_passive(party, "bank", b, binp.transform(d["xp"][te]))

    scores = run_parties({"bank": bank, "fintech": fintech}, timeout_s=24 * 3600)["bank"]
    out["auc"] = auc(d["y"][te], scores)
    return out


def run_woe(d: dict[str, Any], scheme: str) -> float:
    tr = d["tr"]
    binp = Binner.fit(d["xp"][tr], max_bin=10)

    def bank(party: Any) -> Any:
        return run_woe_active(party, ["fintech"], d["y"][tr], scheme=scheme)

    def fintech(party: Any) -> Any:
        return run_woe_passive(party, "bank", binp.transform(d["xp"][tr]), binp, share_iv=True)

    t0 = time.perf_counter()
    run_parties({"bank": bank, "fintech": fintech}, timeout_s=3600)
    return time.perf_counter() - t0


def run_xgboost(d: dict[str, Any], p: BoostParams) -> dict[str, Any]:
    import xgboost as xgb

    tr, te = d["tr"], d["te"]
    x = np.concatenate([d["xa"], d["xp"]], 1)
    params = {"objective": p.objective, "eta": p.learning_rate, "max_depth": p.max_depth,
              "lambda": p.reg_lambda, "gamma": p.gamma, "min_child_weight": p.min_child_weight,
              "max_bin": p.max_bin, "tree_method": "hist", "base_score": float(np.mean(d["y"][tr])),
              "nthread": 1, "seed": 0}
    dtr = xgb.DMatrix(x[tr], d["y"][tr])
    t0 = time.perf_counter()
    bst = xgb.train(params, dtr, p.n_trees)
    fit_s = time.perf_counter() - t0
    # the same boosting on tessera's bin codes (each party's own cuts): isolates the binning from the protocol
    bina, binp = Binner.fit(d["xa"][tr], max_bin=p.max_bin), Binner.fit(d["xp"][tr], max_bin=p.max_bin)
    codes = np.concatenate([bina.transform(d["xa"]), binp.transform(d["xp"])], 1).astype(np.float64)
    same = xgb.train({**params, "tree_method": "exact"}, xgb.DMatrix(codes[tr], d["y"][tr]), p.n_trees)
    return {"auc": auc(d["y"][te], bst.predict(xgb.DMatrix(x[te]))), "fit_s": fit_s,
            "auc_same_bins": auc(d["y"][te], same.predict(xgb.DMatrix(codes[te])))}


def compare_he(rows: int, features: int, bins: int) -> None:
    """The passive party's kernel: encrypt (g, h) of ``rows`` rows, then one layer's bin sums."""
    from vfl.boost.crypto import HeuCipher, HeuSummer, pack_shift

    rng = np.random.default_rng(0)
    gq = rng.integers(-2**30, 2**30, size=rows)
    hq = rng.integers(0, 2**28, size=rows)
    codes = rng.integers(0, bins, size=(rows, features)).astype(np.int8)
    halves = [(rng.integers(0, 2, size=rows)).astype(np.int8)]
    cond = {"rows": rows, "features": features, "bins": bins, "load": os.getloadavg()[0]}
    for scheme in ("ou", "paillier"):
        c = HeuCipher(scheme)
        t0 = time.perf_counter()
        blob = c.encrypt(gq, hq, pack_shift(hq))
        enc_s = time.perf_counter() - t0
        s = HeuSummer(c.public_bytes())
        ct = s.load(blob)
        t0 = time.perf_counter()
        s.bucket_sums(ct, halves, codes, bins)
        emit("boost_he_kernel_s", enc_s, "s", lib="heu", scheme=scheme, step="encrypt", **cond)
        emit("boost_he_kernel_s", time.perf_counter() - t0, "s", lib="heu", scheme=scheme, step="bin_sums", **cond)
    import tenseal as ts

    n = min(rows, 4096)
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    ctx.global_scale = 2**40
    ctx.generate_galois_keys()
    g = rng.normal(size=n)
    t0 = time.perf_counter()
    e = ts.ckks_vector(ctx, g.tolist())
    enc_s = time.perf_counter() - t0
    mask = (codes[:n, 0] == 0).astype(float)
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        (e * mask.tolist()).sum()
    one_bin = (time.perf_counter() - t0) / reps
    chunks = -(-rows // 4096)
    emit("boost_he_kernel_s", enc_s * chunks * 2, "s", lib="tenseal", scheme="ckks", step="encrypt", **cond)
    emit("boost_he_kernel_s", one_bin * chunks * 2 * features * bins, "s", lib="tenseal", scheme="ckks",
         step="bin_sums", method="mask-multiply + rotate-sum per bin, extrapolated from one bin", **cond)
    try:
        import phe
    except ImportError:
        return
    pk, _sk = phe.generate_paillier_keypair(n_length=2048)
    m = 200
    t0 = time.perf_counter()
    cts = [pk.encrypt(int(v)) for v in gq[:m]]
    enc1 = (time.perf_counter() - t0) / m
    t0 = time.perf_counter()
    acc = cts[0]
    for c2 in cts[1:]:
        acc = acc + c2
    add1 = (time.perf_counter() - t0) / (m - 1)
    emit("boost_he_kernel_s", enc1 * rows, "s", lib="phe", scheme="paillier", step="encrypt",
         method=f"extrapolated from {m} rows, g only (unpacked)", **cond)
    emit("boost_he_kernel_s", add1 * rows * features, "s", lib="phe", scheme="paillier", step="bin_sums",
         method=f"extrapolated from {m} additions", **cond)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=0, help="first N rows of the 30,000 (0: all)")
    ap.add_argument("--trees", type=int, default=20)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--min-rows", type=int, default=1)
    ap.add_argument("--mode", default="classic", choices=["classic", "layered", "mix"])
    ap.add_argument("--passive-depth", type=int, default=2)
    ap.add_argument("--scheme", default="ou", choices=["ou", "paillier", "plaintext"])
    ap.add_argument("--compare-he", action="store_true")
    ap.add_argument("--no-woe", action="store_true")
    a = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("vfl.boost").setLevel(logging.INFO)  # one line per tree on stderr
    if a.compare_he:
        compare_he(24000, 10, a.bins)
        return 0
    d = load(a.rows or None)
    p = BoostParams(n_trees=a.trees, max_depth=a.depth, max_bin=a.bins, learning_rate=a.lr, min_rows=a.min_rows,
                    mode=a.mode, passive_depth=a.passive_depth)
    cond = {"rows_train": len(d["tr"]), "rows_test": len(d["te"]), "trees": a.trees, "depth": a.depth,
            "bins": a.bins, "lr": a.lr, "min_rows": a.min_rows, "scheme": a.scheme, "mode": a.mode,
            "cores": os.cpu_count()}
    if a.mode == "layered":
        cond["passive_depth"] = a.passive_depth
    xg = run_xgboost(d, p)
    t = run_tessera(d, p, a.scheme)
    load_avg = os.getloadavg()[0]
    emit("boost_auc_he", t["auc"], "AUC", **cond)
    emit("boost_auc_xgboost", xg["auc"], "AUC", **cond, nthread=1)
    emit("boost_auc_gap", abs(t["auc"] - xg["auc"]), "AUC", **cond, target=0.002)
    if p.subsample == 1 and p.colsample_bytree == 1 and p.min_rows == 1 and p.mode == "classic":
        emit("boost_auc_xgboost_same_bins", xg["auc_same_bins"], "AUC", **cond,
             note="xgboost exact on tessera's bin codes: equal to boost_auc_he when the protocol is lossless")
    per_tree = float(np.mean(t["tree_s"]))
    emit("boost_s_per_tree_he", per_tree, "s", **cond, load=load_avg, target=10.0,
         median=float(np.median(t["tree_s"])), setup_s=t["train_s"] - sum(t["tree_s"]),
         fate_anchor="114 s per tree on 2 x 16 cores")
    emit("boost_xgboost_fit_s", xg["fit_s"], "s", **cond, nthread=1)
    emit("boost_he_vs_xgboost_tree_ratio", per_tree / max(xg["fit_s"] / a.trees, 1e-9), "x", **cond,
         secretflow_anchor="17-465x")
    emit("boost_mb_per_tree", (t["bank_sent"] + t["bank_recv"]) / 1e6 / a.trees, "MB", **cond,
         note="both directions, bank <-> fintech, payload bytes, training only")
    emit("boost_peak_rss_mb_per_party", peak_rss_mb(), "MB", **cond,
         note="both parties in one process: an upper bound per party")
    if not a.no_woe:
        emit("woe_iv_s", run_woe(d, a.scheme), "s", rows=len(d["tr"]), features=10, bins=10, scheme=a.scheme,
             load=os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
