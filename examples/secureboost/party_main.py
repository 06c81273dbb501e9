"""One party of the SecureBoost example: WOE/IV binning, training, or scoring from its saved half.

    python -m examples.secureboost.party_main --config fed.toml --party fintech --step woe   --out out/fintech
    python -m examples.secureboost.party_main --config fed.toml --party bank    --step woe   --out out/bank
    python -m examples.secureboost.party_main --config fed.toml --party fintech --step train --out out/fintech
    python -m examples.secureboost.party_main --config fed.toml --party bank    --step train --out out/bank
    python -m examples.secureboost.party_main --config fed.toml --party fintech --step score --out out/fintech
    python -m examples.secureboost.party_main --config fed.toml --party bank    --step score --out out/bank

The bank (active) reads FATE's ``default_credit_hetero_guest.csv`` (label + 13 features), the
fintech (passive) ``default_credit_hetero_host.csv`` (10 features); rows are already aligned
by ID (run ``python -m vfl.align`` first for your own files). Both compute the same 80/20
train/test split from the row count. Each party writes only its own files under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from examples.bank_fintech.task import test_split
from party.errors import TesseraError
from party.files import data_dir, write_atomic
from vfl.boost import Binner, BoostParams
from vfl.boost.evaluation import auc, importance_active, importance_passive, ks, write_report
from vfl.boost.runner import (
    load_active,
    load_passive,
    predict_active,
    predict_passive,
    save_active,
    save_passive,
    train_active,
    train_passive,
)
from vfl.boost.tree import fit_reference, sigmoid
from vfl.boost.woe import run_woe_active, run_woe_passive, woe_table, write_table


def _load(role: str, rows: int) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    name = "guest" if role == "bank" else "host"
    path = data_dir() / "fate" / f"default_credit_hetero_{name}.csv"
    with open(path) as f:
        header = f.readline().strip().split(",")
    t = np.loadtxt(path, delimiter=",", skiprows=1, max_rows=rows or None)
    if role == "bank":
        return t[:, 2:], t[:, 1], header[2:]
    return t[:, 1:], None, header[1:]


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _params(a: argparse.Namespace) -> BoostParams:
    return BoostParams(n_trees=a.trees, max_depth=a.depth, max_bin=32, learning_rate=0.3, min_rows=a.min_rows,
                       mode=a.mode, passive_depth=min(2, a.depth - 1))


def run(party: Any, a: argparse.Namespace) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, names = _load(a.party_role, a.rows)
    tr, te = test_split(len(x))
    bank = a.party_role == "bank"
    if a.step == "woe":
        binner = Binner.fit(x[tr], names, max_bin=10)
        t0 = time.perf_counter()
        if bank:
            assert y is not None
            write_table(woe_table(binner.transform(x[tr]), binner, y[tr]), str(out / "bank_woe"))
            ivs = run_woe_active(party, [a.peer], y[tr], scheme=a.scheme)
            write_atomic(out / "fintech_iv_shared.json", json.dumps(ivs[a.peer], indent=1))
            print(f"[bank] WOE/IV of its 13 features in {out / 'bank_woe.csv'}; the fintech shared the IV of "
                  f"its {len(ivs[a.peer])} features ({time.perf_counter() - t0:.1f} s)", flush=True)
        else:
            table = run_woe_passive(party, a.peer, binner.transform(x[tr]), binner, share_iv=True)
            write_table(table, str(out / "fintech_woe"))
            best = sorted({r["feature"]: r["iv"] for r in table}.items(), key=lambda kv: -kv[1])[:3]
            print(f"[fintech] WOE/IV of its own features in {out / 'fintech_woe.csv'} (no labels seen); "
                  f"top IV: {', '.join(f'{k} {v:.3f}' for k, v in best)}", flush=True)
        return
    if a.step == "train":
        binner = Binner.fit(x[tr], names, max_bin=32)
        p = _params(a)
        t0 = time.perf_counter()
        if bank:
            assert y is not None
            m = train_active(party, [a.peer], binner.transform(x[tr]), y[tr], p, scheme=a.scheme,
                             checkpoint_dir=out / "checkpoints", binner=binner)
            save_active(out / "bank.boost.json", m, binner)
            train_s = time.perf_counter() - t0
            scores = predict_active(party, m, binner.transform(x[te]))
            imp = importance_active(m, names)
            rep = write_report(y[te], scores, out / "report", name="SecureBoost (bank + fintech)", importance=imp)
            base, trees = fit_reference(binner.transform(x[tr]), y[tr], p)  # bank-only, same booster
            own = sigmoid(base + sum(t.predict(binner.transform(x[te])) for t in trees))
            summary = {"joint": {"auc": rep["auc"], "ks": rep["ks"]}, "bank_only": {"auc": auc(y[te], own),
                       "ks": ks(y[te], own)}, "train_s": train_s, "trees": p.n_trees,
                       "s_per_tree": float(np.mean(m.tree_seconds)) if m.tree_seconds else None,
                       "peak_rss_mb": _rss_mb()}
            write_atomic(out / "summary.json", json.dumps(summary, indent=1))
            print(f"[bank] trained {p.n_trees} trees in {train_s:.1f} s; test AUC {rep['auc']:.4f} KS {rep['ks']:.3f} "
                  f"(bank features only: AUC {summary['bank_only']['auc']:.4f}); report in {out / 'report'}",
                  flush=True)
        else:
            b = train_passive(party, a.peer, binner.transform(x[tr]), checkpoint_dir=out / "checkpoints",
                              binner=binner, min_rows_floor=a.min_rows)
            save_passive(out / "fintech.boost.json", b)
            predict_passive(party, a.peer, b, binner.transform(x[te]))
            write_atomic(out / "importance.json", json.dumps(importance_passive(b, names), indent=1))
            print(f"[fintech] kept {len(b.table)} split thresholds of its own; saved {out / 'fintech.boost.json'} "
                  f"(peak RSS {_rss_mb():.0f} MB)", flush=True)
        return
    # score: fresh process, saved halves only
    if bank:
        m, binner = load_active(out / "bank.boost.json")
        assert binner is not None and y is not None
        scores = predict_active(party, m, binner.transform(x[te]))
        write_atomic(out / "scores.json", json.dumps({"auc": auc(y[te], scores), "rows": len(te),
                                                      "scores": [round(float(s), 6) for s in scores]}))
        print(f"[bank] scored {len(te)} held-out customers from the saved halves: AUC {auc(y[te], scores):.4f}",
              flush=True)
    else:
        b = load_passive(out / "fintech.boost.json")
        assert b.binner is not None
        predict_passive(party, a.peer, b, b.binner.transform(x[te]))
        print(f"[fintech] took part in scoring {len(te)} customers (it sees no scores)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--party", required=True)
    ap.add_argument("--peer", default=None, help="the other party (default: bank <-> fintech)")
    ap.add_argument("--step", choices=["woe", "train", "score"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=0, help="first N customers (0: all 30,000)")
    ap.add_argument("--trees", type=int, default=20)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--min-rows", type=int, default=20)
    ap.add_argument("--mode", choices=["classic", "layered", "mix"], default="classic")
    ap.add_argument("--scheme", choices=["ou", "paillier", "plaintext"], default="ou")
    a = ap.parse_args(argv)
    a.party_role = "bank" if a.party == "bank" else "fintech"
    a.peer = a.peer or ("fintech" if a.party == "bank" else "bank")
    try:
        from party.config import load_federation
        from party.grpc_transport import connect

        with connect(load_federation(a.config), a.party) as party:
            run(party, a)
    except TesseraError as e:
        print(f"{a.party}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
