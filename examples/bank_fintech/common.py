"""Command-line plumbing shared by bank.py and fintech.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGRESS = "@progress "


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    ap.add_argument("--config", required=True, help="federation TOML (router, CA, this party's cert)")
    ap.add_argument("--party", required=True, help="this party's name in the federation")
    ap.add_argument("--data", required=True, help="this party's ALIGNED rows (output of vfl.align)")
    ap.add_argument("--id-column", default="id")
    ap.add_argument("--out", required=True, help="directory for the model, checkpoints, report")
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


def fail(prog: str, e: BaseException) -> int:
    print(f"{prog}: {e}", file=sys.stderr, flush=True)
    return 2
