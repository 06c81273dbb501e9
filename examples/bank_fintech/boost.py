"""One party of the SecureBoost demo: WOE/IV binning report, training + evaluation report, or scoring.

    python -m examples.bank_fintech.boost --config fed.toml --party fintech --step woe   --data fintech_aligned.csv --out out/fintech
    python -m examples.bank_fintech.boost --config fed.toml --party bank    --step woe   --data bank_aligned.csv    --out out/bank
    python -m examples.bank_fintech.boost --config fed.toml --party fintech --step train --data fintech_aligned.csv --out out/fintech
    python -m examples.bank_fintech.boost --config fed.toml --party bank    --step train --data bank_aligned.csv    --out out/bank
    python -m examples.bank_fintech.boost --config fed.toml --party fintech --step score --data fintech_aligned.csv --out out/fintech
    python -m examples.bank_fintech.boost --config fed.toml --party bank    --step score --data bank_aligned.csv    --out out/bank

``--data`` is this party's PSI-aligned CSV (``python -m vfl.align`` first; the bank's has the
label column ``--label``). Both parties sort the aligned rows by ID (so the PSI run's random
agreed order changes nothing) and compute the same 80/20 train/test split from ``--seed``.
Without ``--data``, the bank reads FATE's ``default_credit_hetero_guest.csv`` (label + 13
features) and the fintech ``default_credit_hetero_host.csv`` (10 features), already aligned.

- ``woe``: quantile bins at each party; WOE/IV of the bank's own features in the clear, of the
  fintech's from encrypted label counts (the fintech learns its WOE/IV, no labels; the bank
  learns the IVs the fintech shares, no feature values). ``bank_woe.csv`` / ``fintech_woe.csv``.
- ``train``: SecureBoost over HEU's OU; the bank writes the evaluation report (``report/``: AUC,
  KS, ROC/KS/lift/gains PNG + JSON, feature importance), the bank-only baseline (same booster on
  the bank's features) in ``summary.json``, and each party saves its half (``*.boost.json``).
- ``score``: a fresh process loads its saved half; with ``--held-out`` only the rows training
  held out. The bank writes ``scores.csv`` (id, probability of default) and ``scores.json``
  (AUC/KS when its data has labels); the fintech sees no scores.

Each party writes only its own files under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from examples.bank_fintech.task import PartyTable, by_id, read_table, test_split
from party import cli
from party.files import data_dir, write_atomic
from vfl.boost import Binner, BoostParams, runner
from vfl.boost.evaluation import auc, importance_active, importance_passive, ks, write_report
from vfl.boost.tree import fit_reference, sigmoid
from vfl.boost.woe import run_woe_active, run_woe_passive, woe_table, write_table

STEPS = ("woe", "train", "score")


def load(a: argparse.Namespace) -> PartyTable:
    """This party's rows: ``--data`` (aligned CSV, sorted by ID) or FATE's pre-aligned file."""
    bank = a.party_role == "bank"
    if a.data:
        has_label = bank and a.label in _header(a.data)  # scoring new customers needs no labels
        tab = by_id(read_table(a.data, id_column=a.id_column, label=a.label if has_label else None))
    else:
        name = "guest" if bank else "host"
        tab = read_table(data_dir() / "fate" / f"default_credit_hetero_{name}.csv", label="y" if bank else None)
    n = min(a.rows or len(tab.ids), len(tab.ids))
    return PartyTable(ids=tab.ids[:n], x=tab.x[:n], y=None if tab.y is None else tab.y[:n], columns=tab.columns)


def _header(path: str) -> list[str]:
    with open(path) as f:
        return f.readline().strip().split(",")


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def params(a: argparse.Namespace) -> BoostParams:
    return BoostParams(n_trees=a.trees, max_depth=a.depth, max_bin=32, learning_rate=0.3, min_rows=a.min_rows,
                       mode=a.mode, passive_depth=min(2, a.depth - 1))


def woe(party: Any, a: argparse.Namespace, t: PartyTable, tr: np.ndarray) -> None:
    out = Path(a.out)
    binner = Binner.fit(t.x[tr], t.columns, max_bin=10)
    t0 = time.perf_counter()
    if a.party_role == "bank":
        y = _labels(t, a)
        write_table(woe_table(binner.transform(t.x[tr]), binner, y[tr]), str(out / "bank_woe"))
        ivs = run_woe_active(party, [a.peer], y[tr], scheme=a.scheme, timeout_s=a.timeout_s)
        write_atomic(out / f"{a.peer}_iv_shared.json", json.dumps(ivs[a.peer], indent=1))
        print(f"[bank] WOE/IV of its {len(t.columns)} features in {out / 'bank_woe.csv'}; the {a.peer} shared the "
              f"IV of its {len(ivs[a.peer])} features ({time.perf_counter() - t0:.1f} s)", flush=True)
        return
    table = run_woe_passive(party, a.peer, binner.transform(t.x[tr]), binner, share_iv=True, timeout_s=a.timeout_s)
    write_table(table, str(out / "fintech_woe"))
    best = sorted({r["feature"]: r["iv"] for r in table}.items(), key=lambda kv: -kv[1])[:3]
    print(f"[fintech] WOE/IV of its own features in {out / 'fintech_woe.csv'} (no labels seen); "
          f"top IV: {', '.join(f'{k} {v:.3f}' for k, v in best)}", flush=True)


def train(party: Any, a: argparse.Namespace, t: PartyTable, tr: np.ndarray, te: np.ndarray) -> None:
    out = Path(a.out)
    binner = Binner.fit(t.x[tr], t.columns, max_bin=32)
    bins = binner.transform(t.x)
    p = params(a)
    t0 = time.perf_counter()
    if a.party_role != "bank":
        b = runner.train_passive(party, a.peer, bins[tr], checkpoint_dir=out / "checkpoints", binner=binner,
                          min_rows_floor=a.min_rows, timeout_s=a.timeout_s)
        runner.save_passive(out / "fintech.boost.json", b)
        runner.predict_passive(party, a.peer, b, bins[te], timeout_s=a.timeout_s)
        write_atomic(out / "importance.json", json.dumps(importance_passive(b, t.columns), indent=1))
        print(f"[fintech] kept {len(b.table)} split thresholds of its own; saved {out / 'fintech.boost.json'} "
              f"(peak RSS {_rss_mb():.0f} MB)", flush=True)
        return
    y = _labels(t, a)
    m = runner.train_active(party, [a.peer], bins[tr], y[tr], p, scheme=a.scheme, checkpoint_dir=out / "checkpoints",
                     binner=binner, timeout_s=a.timeout_s)
    runner.save_active(out / "bank.boost.json", m, binner)
    train_s = time.perf_counter() - t0
    scores = runner.predict_active(party, m, bins[te], timeout_s=a.timeout_s)
    rep = write_report(y[te], scores, out / "report", name=f"SecureBoost (bank + {a.peer})",
                       importance=importance_active(m, t.columns))
    base, trees = fit_reference(bins[tr], y[tr], p)  # bank-only: the same booster on its own features
    own = sigmoid(base + np.sum([tree.predict(bins[te]) for tree in trees], axis=0))
    summary: dict[str, Any] = {"customers": len(t.ids), "train_rows": len(tr), "test_rows": len(te),
               "joint": {"auc": rep["auc"], "ks": rep["ks"]}, "bank_only": {"auc": auc(y[te], own),
               "ks": ks(y[te], own)}, "train_s": train_s, "trees": p.n_trees,
               "s_per_tree": float(np.mean(m.tree_seconds)) if m.tree_seconds else None,
               "peak_rss_mb": _rss_mb()}
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    print(f"[bank] trained {p.n_trees} trees in {train_s:.1f} s; test AUC {rep['auc']:.4f} KS {rep['ks']:.3f} "
          f"(bank features only: AUC {summary['bank_only']['auc']:.4f}); report in {out / 'report'}", flush=True)


def score(party: Any, a: argparse.Namespace, t: PartyTable, te: np.ndarray) -> None:
    """A fresh process: the saved half only (the bank's keeps its binner, the fintech's its own)."""
    out = Path(a.out)
    rows = te if a.held_out else np.arange(len(t.ids))
    if a.party_role != "bank":
        b = runner.load_passive(out / "fintech.boost.json")
        assert b.binner is not None
        runner.predict_passive(party, a.peer, b, b.binner.transform(t.x[rows]), timeout_s=a.timeout_s)
        print(f"[fintech] took part in scoring {len(rows)} customers (it sees no scores)", flush=True)
        return
    m, binner = runner.load_active(out / "bank.boost.json")
    if binner is None:
        raise ValueError(f"{out / 'bank.boost.json'} has no binning; save it with the binner")
    s = runner.predict_active(party, m, binner.transform(t.x[rows]), timeout_s=a.timeout_s)
    ids = [t.ids[i] for i in rows]
    write_atomic(out / "scores.csv", "id,score\n" + "".join(f"{i},{v:.6f}\n" for i, v in zip(ids, s, strict=True)))
    result: dict[str, Any] = {"rows": len(rows), "held_out": bool(a.held_out), "model": m.run_id,
                              "scores": str(out / "scores.csv")}
    msg = f"[bank] scored {len(rows)} customers from the saved halves -> {out / 'scores.csv'}"
    if t.y is not None:
        result.update(auc=auc(t.y[rows], s), ks=ks(t.y[rows], s))
        msg += f"; AUC {result['auc']:.4f} (KS {result['ks']:.3f})"
    write_atomic(out / "scores.json", json.dumps(result, indent=1))
    print(msg, flush=True)


def _labels(t: PartyTable, a: argparse.Namespace) -> np.ndarray:
    if t.y is None:
        raise ValueError(f"the bank's data has no label column {a.label!r}")
    return t.y


def run(party: Any, a: argparse.Namespace) -> None:
    Path(a.out).mkdir(parents=True, exist_ok=True)
    t = load(a)
    tr, te = test_split(len(t.ids), seed=a.seed)
    if a.step == "woe":
        woe(party, a, t, tr)
    elif a.step == "train":
        train(party, a, t, tr, te)
    else:
        score(party, a, t, te)


def build_parser(prog: str = "examples.bank_fintech.boost", doc: str | None = None) -> argparse.ArgumentParser:
    ap = cli.parser(prog, doc or __doc__)
    cli.add_federation(ap)
    ap.add_argument("--peer", default=None, help="the other party (default: bank <-> fintech)")
    ap.add_argument("--role", choices=["bank", "fintech"], default=None,
                    help="active (bank: labels) or passive (default: bank if --party is 'bank')")
    ap.add_argument("--step", choices=STEPS, required=True)
    ap.add_argument("--data", default=None, help="this party's ALIGNED rows (default: FATE's default_credit file)")
    ap.add_argument("--id-column", default="id")
    ap.add_argument("--label", default="y", help="the bank's label column")
    cli.add_out(ap, required=True, help="this party's directory (halves, reports, scores)")
    ap.add_argument("--rows", type=int, default=0, help="first N customers (0: all)")
    ap.add_argument("--seed", type=int, default=42, help="shared seed of the train/test split")
    ap.add_argument("--trees", type=int, default=20)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--min-rows", type=int, default=20)
    ap.add_argument("--mode", choices=["classic", "layered", "mix"], default="classic")
    ap.add_argument("--scheme", choices=["ou", "paillier", "plaintext"], default="ou")
    ap.add_argument("--held-out", action="store_true", help="--step score: only the rows training held out")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    return ap


def main(argv: Sequence[str] | None = None, *, prog: str = "examples.bank_fintech.boost",
         doc: str | None = None) -> int:
    a = build_parser(prog, doc).parse_args(argv)
    a.party_role = a.role or ("bank" if a.party == "bank" else "fintech")
    a.peer = a.peer or ("fintech" if a.party_role == "bank" else "bank")

    def connected() -> None:
        from party.grpc_transport import connect

        with connect(cli.load(a), a.party) as party:
            run(party, a)

    return cli.run(a.party, connected, errors=(ValueError, OSError))


# ------------------------------------------------------------ run_local driver (both examples)


def run_steps(fed: Any, work: Path, common: Sequence[Any], *, data: dict[str, Path] | None = None,
              first: int = 1, timeout_s: float = 6 * 3600) -> None:
    """The three steps on a :class:`party.local.LocalFederation`, two new processes each."""
    titles = {"woe": "binning report: federated WOE/IV", "train": "SecureBoost training + evaluation report",
              "score": "scoring from the saved halves, in new processes (no retraining)"}
    for i, step in enumerate(STEPS, start=first):
        print(f"\n== step {i}: {titles[step]} ==", flush=True)
        fed.wait([fed.start(f"{n}-{step}", "examples.bank_fintech.boost", *common, "--party", n, "--step", step,
                            "--out", work / n, *(("--data", data[n]) if data else ()),
                            *(("--held-out",) if step == "score" else ()))
                  for n in ("fintech", "bank")], timeout_s=timeout_s)


def print_summary(work: Path) -> dict[str, Any]:
    """The bank's figures after :func:`run_steps`; returns summary.json plus the rescored AUC."""
    s = json.loads((work / "bank" / "summary.json").read_text())
    scored = json.loads((work / "bank" / "scores.json").read_text())
    print(f"\n  model                        test AUC     KS\n"
          f"  SecureBoost, bank + fintech  {s['joint']['auc']:.4f}  {s['joint']['ks']:.3f}\n"
          f"  bank features only           {s['bank_only']['auc']:.4f}  {s['bank_only']['ks']:.3f}\n"
          f"  from the saved halves        {scored['auc']:.4f}\n"
          f"  {s['trees']} trees, {s['s_per_tree']:.1f} s per tree over gRPC + mTLS; bank peak RSS "
          f"{s['peak_rss_mb']:.0f} MB")
    print(f"files: {work / 'bank'} (report/, bank_woe.csv, bank.boost.json, scores.csv), {work / 'fintech'} "
          f"(fintech_woe.csv, fintech.boost.json, importance.json)", flush=True)
    return {**s, "rescored_auc": scored["auc"]}


if __name__ == "__main__":
    sys.exit(main())
