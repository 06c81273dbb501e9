"""One party of the transport demo.

    python -m examples.transport_demo.party_main --config fed.toml --party bank
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np

from party import Party, Tag, cli
from party.grpc_transport import connect


def exchange(me: Party, timeout_s: float) -> int:
    """The bank sends 1 MB and checks the fintech's checksum; the fintech answers."""
    tag = Tag("demo", "s1")
    if me.name == "bank":
        x = np.random.default_rng(0).standard_normal((1024, 256)).astype(np.float32)
        t = time.perf_counter()
        me.send("fintech", tag.at("features"), {"note": "hello from bank", "x": x})
        reply = me.recv("fintech", tag.at("reply"), timeout_s=timeout_s)
        ms = (time.perf_counter() - t) * 1e3
        print(f"[bank] sent a {x.nbytes / 1e6:.1f} MB float32 array to fintech over mTLS; "
              f"fintech replied {reply!r} in {ms:.1f} ms", flush=True)
        ok = abs(reply["sum"] - float(x.sum(dtype=np.float64))) < 1e-3
        print(f"[bank] checksum {'matches' if ok else 'DIFFERS'}", flush=True)
        return 0 if ok else 1
    msg = me.recv("bank", tag.at("features"), timeout_s=timeout_s)
    print(f"[fintech] got {msg['note']!r} and an array {msg['x'].shape} {msg['x'].dtype}",
          flush=True)
    me.send("bank", tag.at("reply"), {"sum": float(msg["x"].sum(dtype=np.float64))})
    time.sleep(0.2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.transport_demo.party_main", __doc__)
    cli.add_federation(ap)
    args = ap.parse_args(argv)

    def body() -> int:
        config = cli.load(args)
        with connect(config, args.party) as me:
            return exchange(me, timeout_s=config.timeout_s)

    return cli.run(args.party, body)


if __name__ == "__main__":
    sys.exit(main())
