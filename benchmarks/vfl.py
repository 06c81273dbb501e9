"""Vertical FL benchmark on FATE's default_credit (bank = guest with labels, fintech = host).

    python -m benchmarks.vfl [--epochs 12] [--rows N] [--modes bank,plaintext,he] [--leak] [--processes]

Fixed seeds, 80/20 train/test split, the same bottom/top architecture in every
mode. Prints JSON lines: test AUC in HE mode, plaintext mode and for the bank
alone; |AUC_he - AUC_plain|; seconds per epoch per mode; MB sent per epoch per
party; peak RSS (both parties run as threads of this process, so the figure
covers both); HE scoring throughput; with ``--leak``, the label-leakage attack
AUCs (norm and direction attacks on the gradients the fintech sees) without and
with the ``grad_noise`` defence; with ``--processes``, HE mode again with each
party in its own process through the gRPC router with mTLS (per-party peak RSS).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch

from benchmarks._emit import emit, peak_rss_mb
from examples.bank_fintech import task
from examples.bank_fintech.task import (
    Preprocessor,
    bank_model,
    fintech_model,
    read_table,
    test_split,
    train_bank_only,
)
from party.files import data_dir
from party.testing import run_parties
from vfl.split import auc, binary_metrics
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig

D, K = task.D, task.K


def load(rows: int | None) -> dict[str, Any]:
    g = read_table(data_dir() / "fate" / "default_credit_hetero_guest.csv", label="y")
    h = read_table(data_dir() / "fate" / "default_credit_hetero_host.csv")
    assert g.ids == h.ids and g.y is not None
    n = rows or len(g.ids)
    tr, te = test_split(n)
    pa, pp = Preprocessor().fit(g.x[:n][tr]), Preprocessor().fit(h.x[:n][tr])
    return {"xa": pa.transform(g.x[:n]), "xp": pp.transform(h.x[:n]), "y": g.y[:n],
            "ids": g.ids[:n], "tr": tr, "te": te}


def run_mode(d: dict[str, Any], cfg: TrainConfig, leak: list[Any] | None = None) -> dict[str, Any]:
    tr, te = d["tr"], d["te"]
    epochs_run: list[float] = []
    stats: dict[str, Any] = {}

    def bank(party: Any) -> Any:
        t = ActiveTrainer(party, ["fintech"], bank_model(d["xa"].shape[1], d=D, k=K), d["xa"][tr],
                          d["y"][tr], config=cfg,
                          on_event=lambda k, i: epochs_run.append(time.perf_counter())
                          if k == "epoch" else None)
        t0 = time.perf_counter()
        res = t.fit()
        t_fit = time.perf_counter() - t0
        sent_fit = party.transport.stats.snapshot()["bytes_sent"]
        t1 = time.perf_counter()
        prob = t.predict(d["xa"][te])
        t_pred = time.perf_counter() - t1
        stats["bank_sent"] = sent_fit
        return res, prob, t_fit, t_pred, t0

    def fintech(party: Any) -> Any:
        on_grad = None
        if leak is not None:
            on_grad = lambda idx, g: leak.append((idx.copy(), g.copy()))  # noqa: E731
        t = PassiveTrainer(party, "bank", fintech_model(d["xp"].shape[1], d=D), d["xp"][tr],
                           config=cfg, on_gradient=on_grad)
        t.fit()
        stats["fintech_sent"] = party.transport.stats.snapshot()["bytes_sent"]
        t.predict(d["xp"][te])

    out = run_parties({"bank": bank, "fintech": fintech}, timeout_s=7200)
    res, prob, t_fit, t_pred, _ = out["bank"]
    n_ep = len(res.history)
    return {"auc": auc(d["y"][te], prob), "metrics": binary_metrics(d["y"][te], prob),
            "s_per_epoch": t_fit / max(1, n_ep), "epochs": n_ep, "best_epoch": res.best_epoch,
            "mb_bank": stats["bank_sent"] / 1e6 / max(1, n_ep),
            "mb_fintech": stats["fintech_sent"] / 1e6 / max(1, n_ep),
            "score_rows_per_s": len(te) / t_pred, "history": res.history}


def _party_process(name: str, config: Any, rows: int | None, cfg: TrainConfig, q: Any) -> None:
    """One party in its own process over the gRPC router (for per-party RSS)."""
    import resource

    from party.grpc_transport import connect

    torch.set_num_threads(1)
    d = load(rows)
    tr, te = d["tr"], d["te"]
    try:
        with connect(config, name) as party:
            if name == "bank":
                t = ActiveTrainer(party, ["fintech"], bank_model(d["xa"].shape[1], d=D, k=K),
                                  d["xa"][tr], d["y"][tr], config=cfg)
                t0 = time.perf_counter()
                res = t.fit()
                t_fit = time.perf_counter() - t0
                t1 = time.perf_counter()
                prob = t.predict(d["xa"][te])
                out = {"auc": auc(d["y"][te], prob), "epochs": len(res.history),
                       "s_per_epoch": t_fit / max(1, len(res.history)),
                       "score_rows_per_s": len(te) / (time.perf_counter() - t1)}
            else:
                t2 = PassiveTrainer(party, "bank", fintech_model(d["xp"].shape[1], d=D),
                                    d["xp"][tr], config=cfg)
                t2.fit()
                t2.predict(d["xp"][te])
                out = {}
            out["sent_mb"] = party.transport.stats.snapshot()["bytes_sent"] / 1e6
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        q.put((name, out))
    except BaseException as e:  # reported to the parent
        q.put((name, {"error": repr(e)}))


def run_processes(rows: int | None, cfg: TrainConfig) -> dict[str, Any]:
    """Both parties as separate processes through the gRPC router with mTLS."""
    import multiprocessing as mp
    import tempfile

    from party import Role
    from party.testing import grpc_federation

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    roles = {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}
    with tempfile.TemporaryDirectory() as tmp, \
            grpc_federation(["bank", "fintech"], roles=roles, directory=tmp) as (config, _):
        procs = [ctx.Process(target=_party_process, args=(n, config, rows, cfg, q))
                 for n in ("fintech", "bank")]
        for p in procs:
            p.start()
        out = dict(q.get(timeout=7200) for _ in procs)
        for p in procs:
            p.join(60)
    for n, o in out.items():
        if "error" in o:
            raise RuntimeError(f"{n}: {o['error']}")
    return out


def bank_only(d: dict[str, Any], cfg: TrainConfig) -> float:
    """The bank's own features and the same head, no passive party (z_passive = 0)."""
    prob = train_bank_only(d["xa"][d["tr"]], d["y"][d["tr"]], d["xa"][d["te"]], epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                           val_fraction=cfg.val_fraction, patience=cfg.patience, d=D, k=K)
    return auc(d["y"][d["te"]], prob)


def leak_aucs(grads: list[Any], y: np.ndarray) -> tuple[float, float]:
    """Norm attack and direction attack AUC (Li et al. 2021) on the last epoch's gradients."""
    norms, cos, labels = [], [], []
    for idx, g in grads:
        yy = y[idx]
        norms.append(np.linalg.norm(g, axis=1))
        pos = np.flatnonzero(yy == 1)
        ref = g[pos[0]] if len(pos) else g[0]  # attacker knows one positive's gradient
        cos.append(g @ ref / (np.linalg.norm(g, axis=1) * np.linalg.norm(ref) + 1e-30))
        labels.append(yy)
    lab = np.concatenate(labels)
    a_norm = auc(lab, np.concatenate(norms))
    a_cos = auc(lab, np.concatenate(cos))
    return max(a_norm, 1 - a_norm), max(a_cos, 1 - a_cos)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--rows", type=int, default=None, help="use only the first N rows")
    ap.add_argument("--modes", default="bank,plaintext,he")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lr-interactive", type=float, default=0.02)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--d", type=int, default=task.D, help="passive bottom output width")
    ap.add_argument("--k", type=int, default=task.K, help="interactive layer width")
    ap.add_argument("--leak", action="store_true", help="also measure label leakage")
    ap.add_argument("--processes", action="store_true",
                    help="also run HE mode with each party in its own process over gRPC+mTLS "
                         "(per-party peak RSS)")
    ap.add_argument("--grad-noise", type=float, default=1.0, help="defence σ for --leak")
    args = ap.parse_args(argv)
    global D, K
    D, K = args.d, args.k
    torch.set_num_threads(1)
    d = load(args.rows)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      lr_interactive=args.lr_interactive, momentum=args.momentum, patience=3)
    cond = {"rows_train": len(d["tr"]), "rows_test": len(d["te"]), "batch": cfg.batch_size,
            "epochs_max": cfg.epochs, "d": D, "k": K, "N": cfg.ckks.poly_modulus_degree,
            "cores": os.cpu_count(), "load_avg_1m_start": round(os.getloadavg()[0], 1)}
    modes = args.modes.split(",")
    res: dict[str, Any] = {}
    if "bank" in modes:
        emit("vfl_auc_bank_only", round(bank_only(d, cfg), 4), "auc", **cond)
    for mode in ("plaintext", "he"):
        if mode not in modes:
            continue
        r = run_mode(d, TrainConfig(**{**cfg.__dict__, "mode": mode}))
        res[mode] = r
        c = {**cond, "mode": mode, "epochs_run": r["epochs"], "best_epoch": r["best_epoch"]}
        emit(f"vfl_auc_{mode}", round(r["auc"], 4), "auc", **c, ks=round(r["metrics"]["ks"], 4))
        emit(f"vfl_s_per_epoch_{mode}", round(r["s_per_epoch"], 2), "s", **c)
        emit(f"vfl_mb_per_epoch_{mode}", round(r["mb_bank"] + r["mb_fintech"], 2), "MB",
             **c, bank_mb=round(r["mb_bank"], 2), fintech_mb=round(r["mb_fintech"], 2))
        emit(f"vfl_score_rows_per_s_{mode}", round(r["score_rows_per_s"]), "rows/s", **c)
    if "plaintext" in res and "he" in res:
        emit("vfl_auc_gap_he_vs_plaintext", round(abs(res["he"]["auc"] - res["plaintext"]["auc"]), 5),
             "auc", **cond)
    emit("vfl_peak_rss_mb", round(peak_rss_mb(), 1), "MB", **cond, note="both parties, one process")
    if args.processes:
        r2 = run_processes(args.rows, TrainConfig(**{**cfg.__dict__, "mode": "he"}))
        c = {**cond, "mode": "he", "transport": "grpc+mtls, 2 processes",
             "epochs_run": r2["bank"]["epochs"]}
        emit("vfl_auc_he_grpc", round(r2["bank"]["auc"], 4), "auc", **c)
        emit("vfl_s_per_epoch_he_grpc", round(r2["bank"]["s_per_epoch"], 2), "s", **c)
        emit("vfl_score_rows_per_s_he_grpc", round(r2["bank"]["score_rows_per_s"]), "rows/s", **c)
        for n in ("bank", "fintech"):
            emit("vfl_peak_rss_mb_per_party", round(r2[n]["rss_mb"], 1), "MB", **c, party=n)
            emit("vfl_mb_sent_total_grpc", round(r2[n]["sent_mb"], 1), "MB", **c, party=n)
    if args.leak:
        for sigma in (0.0, args.grad_noise):
            grads: list[Any] = []
            lc = TrainConfig(**{**cfg.__dict__, "mode": "plaintext", "grad_noise": sigma,
                                "epochs": min(cfg.epochs, 3)})
            r = run_mode(d, lc, leak=grads)
            last = grads[-len(grads) // max(1, r["epochs"]):]
            y_tr = d["y"][d["tr"]]
            a_norm, a_cos = leak_aucs(last, y_tr)
            c = {**cond, "grad_noise": sigma, "model_auc": round(r["auc"], 4)}
            emit("vfl_label_leak_norm_attack_auc", round(a_norm, 4), "auc", **c)
            emit("vfl_label_leak_cosine_attack_auc", round(a_cos, 4), "auc", **c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
