"""Command-line plumbing shared by bank.py and fintech.py."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from examples.bank_fintech.task import PartyTable, Preprocessor, test_split
from party import Party, cli

PROGRESS = "@progress "


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    ap = cli.parser(f"examples.bank_fintech.{prog}", doc)
    cli.add_federation(ap)
    ap.add_argument("--data", required=True, help="this party's ALIGNED rows (output of vfl.align)")
    ap.add_argument("--id-column", default="id")
    cli.add_out(ap, required=True, help="directory for the model, checkpoints, report")
    ap.add_argument("--compare", action="store_true",
                    help="also train in plaintext mode (for the AUC comparison; reveals h to the bank)")
    ap.add_argument("--rows", type=int, default=None, help="use only the first N aligned rows")
    ap.add_argument("--seed", type=int, default=42, help="shared seed (split, shuffling)")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument("--progress", action="store_true",
                    help=f"print machine-readable '{PROGRESS.strip()}' lines (run_local uses them)")
    sc = ap.add_argument_group("scoring with a saved model (no training)")
    sc.add_argument("--score", action="store_true",
                    help="load this party's saved half from --out (or --model) and score the "
                         "aligned rows of --data together with the peer (also run with --score)")
    sc.add_argument("--mode", choices=("he", "plaintext"), default="he",
                    help="which saved model to score with (default: he)")
    sc.add_argument("--model", default=None,
                    help=f"model file (default: OUT/{prog}_model_MODE.pt, written by training)")
    sc.add_argument("--held-out", action="store_true",
                    help="score only the rows training held out for testing (same --seed)")
    return ap


def model_paths(prog: str, args: Any) -> tuple[Path, Path]:
    """(model half, preprocessor) written by training in ``--out``."""
    out = Path(args.out)
    model = Path(args.model) if args.model else out / f"{prog}_model_{args.mode}.pt"
    return model, out / f"{prog}_preprocess.json"


def scoring_rows(prog: str, args: Any, tab: PartyTable) -> tuple[Path, np.ndarray, np.ndarray]:
    """(saved model half, rows to score, their preprocessed features) for ``--score``."""
    model_file, pre_file = model_paths(prog, args)
    try:
        pre = Preprocessor.from_json(pre_file.read_text(), source=str(pre_file))
    except FileNotFoundError:
        raise ValueError(f"{pre_file} not found: train first with the same --out") from None
    n = min(args.rows or len(tab.ids), len(tab.ids))
    rows = test_split(n, seed=args.seed)[1] if args.held_out else np.arange(n)
    if tab.x.shape[1] != pre.n_columns:
        raise ValueError(f"{args.data}: {tab.x.shape[1]} feature columns, the model was trained "
                         f"on {pre.n_columns}")
    return model_file, rows, pre.transform(tab.x[rows])


def run(prog: str, args: Any, *, train: Callable[[Party, Any], int],
        score: Callable[[Party, Any], object]) -> int:
    """Connect ``--party``, then ``score`` (with ``--score``) or ``train``; bad input or a
    peer's failure: one line on stderr, exit code 2."""

    def connected() -> int:
        import torch

        from party.grpc_transport import connect

        torch.set_num_threads(1)  # tiny models; SEAL dominates and the peer needs the other core
        with connect(cli.load(args), args.party) as party:
            if args.score:
                score(party, args)
                return 0
            return train(party, args)

    return cli.run(prog, connected, errors=(ValueError, OSError))


def score_config(args: Any) -> Any:
    """The scoring session's settings; both parties derive the same session name."""
    from vfl.trainer import TrainConfig

    return TrainConfig(mode=args.mode, session=f"score-{args.mode}", timeout_s=args.timeout_s)


def progress_printer(mode: str, enabled: bool) -> Callable[[str, dict[str, Any]], None]:
    """Trainer event hook: progress lines for run_local, a summary line per epoch."""
    t0 = time.perf_counter()

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "step" and enabled:
            rec = {"mode": mode, "epoch": info["epoch"], "step": info["step"], "steps": info["steps"]}
            print(PROGRESS + json.dumps(rec), flush=True)
        elif kind == "epoch" and "val_auc" in info:
            print(f"  [{mode}] epoch {int(info['epoch'])}: train loss {info['train_loss']:.4f}, "
                  f"validation AUC {info['val_auc']:.4f}, KS {info['val_ks']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    return on_event
