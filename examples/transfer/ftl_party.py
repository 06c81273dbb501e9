"""One party of the FTL example: A (guest, holds the labels) or B (host, no labels).

    python -m examples.transfer.guest --config fed.toml --party a --peer b --input a.csv --out DIR
    python -m examples.transfer.host  --config fed.toml --party b --peer a --input b.csv --scores scores.csv --out DIR

Both parties:

1. PSI with the peer on the ID column (``vfl.align.align``): each learns which of
   its rows the peer also holds, in the agreed order, and nothing about the peer's
   other customers.
2. FTL training over CKKS (``ftl.train_ftl``), checkpointing to ``DIR/a-ckpt``
   (A) or ``DIR/b-ckpt`` (B), whatever the party's name; a rerun with the same ``--out`` resumes.
3. Scoring (``ftl.predict_ftl``): B scores all of its rows with A and writes ID,
   score, in_overlap to ``--scores`` (atomically); A answers B's requests
   without seeing the scores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from examples.transfer.task import ID, LABEL, add_params_args, features, params_from
from ftl import FtlResult, predict_ftl, train_ftl
from party import Party, TesseraError, cli
from party.files import write_atomic
from party.grpc_transport import connect
from vfl.align import align, read_table

Role = Literal["guest", "host"]
#: role -> (its default party name, the peer's, what the command says it is)
ROLES: dict[Role, tuple[str, str, str]] = {
    "guest": ("a", "b", "FTL party A (labels)"),
    "host": ("b", "a", "FTL party B (features, no labels)"),
}


def build_parser(role: Role) -> argparse.ArgumentParser:
    me, peer, what = ROLES[role]
    ap = cli.parser(f"examples.transfer.{role}", what)
    cli.add_federation(ap, default_party=me)
    ap.add_argument("--peer", default=peer)
    ap.add_argument("--input", required=True)
    if role == "host":
        ap.add_argument("--scores", required=True, help="where B's scores go (CSV)")
    cli.add_out(ap, required=True, help="checkpoints go to OUT/<party>-ckpt")
    add_params_args(ap)
    return ap


def main(argv: Sequence[str] | None = None, *, role: Role) -> int:
    args = build_parser(role).parse_args(argv)
    torch.set_num_threads(1)
    return cli.run(f"[{args.party}] error", lambda: run(args, role))


def run(args: argparse.Namespace, role: Role) -> int:
    me_name = args.party
    table = read_table(args.input)
    if role == "guest" and LABEL not in table.columns:
        raise TesseraError(f"{args.input}: party A needs the label column {LABEL!r}")
    if role == "host" and LABEL in table.columns:
        raise TesseraError(f"{args.input}: labels on the wrong side — party B must not "
                           f"hold the label column {LABEL!r}")
    x = features(table)
    y = table[LABEL].to_numpy(dtype=float) if role == "guest" else None
    config = cli.load(args)
    with connect(config, args.party) as me:
        rows = _psi(me, args, table, config.timeout_s)
        out = train_ftl(me, args.peer, role=role, x=x, y=y, overlap=rows,
                        params=params_from(args),
                        checkpoint_dir=Path(args.out) / f"{ROLES[role][0]}-ckpt")
        if role == "guest":
            _print_epochs(me_name, out)
            predict_ftl(me, args.peer, role="guest", model=out.model, timeout_s=config.timeout_s)
            print(f"[{me_name}] answered {args.peer}'s scoring requests", flush=True)
            return 0
        print(f"[{me_name}] trained: {out.decryptions} decryptions under {me_name}'s key, "
              f"{out.rotations} key rotations", flush=True)
        t1 = time.perf_counter()
        scores = predict_ftl(me, args.peer, role="host", model=out.model, x=x,
                             timeout_s=config.timeout_s)
        assert scores is not None
        print(f"[{me_name}] scored {len(scores)} rows with {args.peer} in "
              f"{time.perf_counter() - t1:.1f} s", flush=True)
    in_overlap = np.zeros(len(table), dtype=bool)
    in_overlap[rows] = True
    write_atomic(args.scores, pd.DataFrame({ID: table[ID], "score": scores,
                                            "in_overlap": in_overlap}).to_csv(index=False))
    print(f"[{me_name}] wrote {args.scores}", flush=True)
    return 0


def _psi(me: Party, args: argparse.Namespace, table: pd.DataFrame, timeout_s: float) -> np.ndarray:
    t0 = time.perf_counter()
    res = align(me, table[[ID]], [ID], peers=[args.peer], workers=1, progress=False,
                timeout_s=timeout_s)
    assert res.rows is not None
    print(f"[{me.name}] PSI: {len(table)} own rows, {len(res.rows)} shared with {args.peer} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return np.asarray(res.rows)


def _print_epochs(name: str, out: FtlResult) -> None:
    seconds, nbytes, losses = out.epoch_seconds, out.epoch_bytes, out.epoch_losses
    first = len(losses) - len(seconds)  # > 0 after a resume
    for i, (s, b) in enumerate(zip(seconds, nbytes, strict=True)):
        if i % 5 == 0 or i == len(seconds) - 1:
            print(f"[{name}] epoch {first + i}: loss {losses[first + i]:.4f}, {s:.2f} s, "
                  f"{b / 1e6:.1f} MB", flush=True)
