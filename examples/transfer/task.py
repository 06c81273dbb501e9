"""Data and model settings shared by the two FTL party scripts (no I/O with the peer here)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ftl import FtlParams, preprocess, split_credit
from ftl.data import CREDIT_FILE
from party.files import write_atomic

ID = "ID"
LABEL = "Y"


def make_inputs(data_dir: Path, work: Path, *, overlap: float, smoke: bool,
                seed: int = 0) -> dict[str, Path]:
    """Write A's table (ID, A's features, Y), B's table (ID, B's features) and B's truth."""
    n_guest, n_host = (3000, 2000) if smoke else (15000, 10000)
    sp = split_credit(data_dir / CREDIT_FILE, overlap_frac=overlap, n_guest=n_guest,
                      n_host=n_host, seed=seed)
    paths = {"a": work / "a.csv", "b": work / "b.csv", "truth": work / "b_truth.csv"}
    write_atomic(paths["a"], sp.guest.to_csv(index=False))
    write_atomic(paths["b"], sp.host.to_csv(index=False))
    write_atomic(paths["truth"], sp.host_truth.to_csv(index=False))
    return paths


def features(table: pd.DataFrame) -> np.ndarray:
    """This party's local scaling of its own feature columns (everything but ID and Y)."""
    cols = [c for c in table.columns if c not in (ID, LABEL)]
    return preprocess(table[cols].to_numpy(dtype=np.float64))


def add_params_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=FtlParams.epochs)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--alignment", type=float, default=FtlParams.alignment)
    ap.add_argument("--seed", type=int, default=0)


def params_from(args: argparse.Namespace) -> FtlParams:
    return FtlParams(epochs=args.epochs, batch_size=args.batch_size, dim=args.dim,
                     alignment=args.alignment, seed=args.seed)
