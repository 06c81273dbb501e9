"""One party of the transport demo: `python -m examples.transport_demo.party_main --config fed.toml --party bank`."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from party import Tag, TesseraError
from party.config import load_federation
from party.grpc_transport import connect


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--party", required=True)
    args = ap.parse_args()
    cfg = load_federation(args.config)
    try:
        with connect(cfg, args.party) as me:
            tag = Tag("demo", "s1")
            if args.party == "bank":
                x = np.random.default_rng(0).standard_normal((1024, 256)).astype(np.float32)
                t = time.perf_counter()
                me.send("fintech", tag.at("features"), {"note": "hello from bank", "x": x})
                reply = me.recv("fintech", tag.at("reply"), timeout_s=cfg.timeout_s)
                ms = (time.perf_counter() - t) * 1e3
                print(f"[bank] sent a {x.nbytes / 1e6:.1f} MB float32 array to fintech over mTLS; "
                      f"fintech replied {reply!r} in {ms:.1f} ms", flush=True)
                ok = abs(reply["sum"] - float(x.sum(dtype=np.float64))) < 1e-3
                print(f"[bank] checksum {'matches' if ok else 'DIFFERS'}", flush=True)
                return 0 if ok else 1
            msg = me.recv("bank", tag.at("features"), timeout_s=cfg.timeout_s)
            print(f"[fintech] got {msg['note']!r} and an array {msg['x'].shape} {msg['x'].dtype}",
                  flush=True)
            me.send("bank", tag.at("reply"), {"sum": float(msg["x"].sum(dtype=np.float64))})
            time.sleep(0.2)
            return 0
    except TesseraError as e:
        print(f"[{args.party}] error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
