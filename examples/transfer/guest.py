"""Party A (guest, holds the labels) of the FTL example.

    python -m examples.transfer.guest --config fed.toml --party a --peer b --input a.csv --workdir DIR

1. PSI with B on the ID column (``vfl.align.align``): A learns which of its rows
   B also holds, in the agreed order, and nothing about B's other customers.
2. FTL training over CKKS (``ftl.train_ftl``), checkpointing to DIR/a-ckpt.
3. Answers B's scoring requests (``ftl.predict_ftl``) without seeing the scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from examples.transfer.task import ID, LABEL, add_params_args, features, params_from
from ftl import predict_ftl, train_ftl
from party.config import load_federation
from party.errors import TesseraError
from party.grpc_transport import connect
from vfl.align import align, read_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="FTL party A (labels)")
    ap.add_argument("--config", required=True)
    ap.add_argument("--party", default="a")
    ap.add_argument("--peer", default="b")
    ap.add_argument("--input", required=True)
    ap.add_argument("--workdir", required=True)
    add_params_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cfg = load_federation(args.config)
        table = read_table(args.input)
        if LABEL not in table.columns:
            raise TesseraError(f"{args.input}: party A needs the label column {LABEL!r}")
        x, y = features(table), table[LABEL].to_numpy(dtype=float)
        params = params_from(args)
        with connect(cfg, args.party) as me:
            t0 = time.perf_counter()
            res = align(me, table[[ID]], [ID], peers=[args.peer], workers=1, progress=False,
                        timeout_s=cfg.timeout_s)
            assert res.rows is not None
            print(f"[a] PSI: {len(table)} own rows, {len(res.rows)} shared with b "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            out = train_ftl(me, args.peer, role="guest", x=x, y=y, overlap=res.rows,
                            params=params, checkpoint_dir=Path(args.workdir) / "a-ckpt")
            first = len(out.epoch_losses) - len(out.epoch_seconds)  # > 0 after a resume
            for i, (s, b) in enumerate(zip(out.epoch_seconds, out.epoch_bytes, strict=True)):
                e = first + i
                if i % 5 == 0 or i == len(out.epoch_seconds) - 1:
                    print(f"[a] epoch {e}: loss {out.epoch_losses[e]:.4f}, {s:.2f} s, "
                          f"{b / 1e6:.1f} MB", flush=True)
            predict_ftl(me, args.peer, role="guest", model=out.model, timeout_s=cfg.timeout_s)
            print("[a] answered b's scoring requests", flush=True)
    except TesseraError as e:
        print(f"[a] error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
