"""Transport demo: a router and two parties as three processes on localhost, with mutual TLS.

    python -m examples.transport_demo.run_local [--out DIR]

Makes a CA and certificates (``party.certs``), writes a federation TOML, starts
``python -m party.router`` and waits for its port, then ``bank`` and ``fintech``
exchange a 1 MB array and a reply, and each prints what it did
(``party.local.LocalFederation``: the first failure stops every process).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from party import cli
from party.local import LocalFederation


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.transport_demo.run_local", __doc__)
    cli.add_out(ap, help="where certificates, the config and logs go (default: a temp dir)")
    args = ap.parse_args(argv)

    def body() -> int:
        with LocalFederation({"bank": "active", "fintech": "passive"}, name="demo", out=args.out,
                             timeout_s=30) as fed:
            print(f"federation config {fed.config}, certificates in {fed.certs}", flush=True)
            procs = [fed.start(n, "examples.transport_demo.party_main", "--config", fed.config,
                               "--party", n) for n in ("fintech", "bank")]
            fed.wait(procs, timeout_s=120)
        print("demo finished: both parties succeeded")
        return 0

    return cli.run("transport_demo", body)


if __name__ == "__main__":
    sys.exit(main())
