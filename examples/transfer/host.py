"""Party B (host, no labels) of the FTL example.

    python -m examples.transfer.host --config fed.toml --party b --peer a --input b.csv --scores scores.csv --workdir DIR

1. PSI with A on the ID column (``vfl.align.align``).
2. FTL training over CKKS (``ftl.train_ftl``), checkpointing to DIR/b-ckpt.
3. Scores all of its rows with A (``ftl.predict_ftl``) and writes ID, score,
   in_overlap to ``--scores`` (atomically). A never sees the scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from examples.transfer.task import ID, LABEL, add_params_args, features, params_from
from ftl import predict_ftl, train_ftl
from party.config import load_federation
from party.errors import TesseraError
from party.files import write_atomic
from party.grpc_transport import connect
from vfl.align import align, read_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="FTL party B (features, no labels)")
    ap.add_argument("--config", required=True)
    ap.add_argument("--party", default="b")
    ap.add_argument("--peer", default="a")
    ap.add_argument("--input", required=True)
    ap.add_argument("--scores", required=True)
    ap.add_argument("--workdir", required=True)
    add_params_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cfg = load_federation(args.config)
        table = read_table(args.input)
        if LABEL in table.columns:
            raise TesseraError(f"{args.input}: labels on the wrong side — party B must not "
                               f"hold the label column {LABEL!r}")
        x = features(table)
        with connect(cfg, args.party) as me:
            t0 = time.perf_counter()
            res = align(me, table[[ID]], [ID], peers=[args.peer], workers=1, progress=False,
                        timeout_s=cfg.timeout_s)
            assert res.rows is not None
            print(f"[b] PSI: {len(table)} own rows, {len(res.rows)} shared with a "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            out = train_ftl(me, args.peer, role="host", x=x, overlap=res.rows,
                            params=params_from(args),
                            checkpoint_dir=Path(args.workdir) / "b-ckpt")
            print(f"[b] trained: {out.decryptions} decryptions under b's key, "
                  f"{out.rotations} key rotations", flush=True)
            t1 = time.perf_counter()
            scores = predict_ftl(me, args.peer, role="host", model=out.model, x=x,
                                 timeout_s=cfg.timeout_s)
            assert scores is not None
            print(f"[b] scored {len(scores)} rows with a in {time.perf_counter() - t1:.1f} s",
                  flush=True)
        in_overlap = np.zeros(len(table), dtype=bool)
        in_overlap[res.rows] = True
        write_atomic(args.scores, pd.DataFrame({ID: table[ID], "score": scores,
                                                "in_overlap": in_overlap}).to_csv(index=False))
        print(f"[b] wrote {args.scores}", flush=True)
    except TesseraError as e:
        print(f"[b] error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
