"""Transport demo: a router and two parties as three processes on localhost, with mutual TLS.

    python -m examples.transport_demo.run_local [--workdir DIR]

Makes a CA and certificates (`python -m party.certs init`), writes a federation
TOML, starts `python -m party.router`, then `bank` and `fintech` exchange a
1 MB array and a reply, and each prints what it did.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from party.certs import init_certs
from party.config import write_federation
from party.local import free_port

ROOT = Path(__file__).resolve().parents[2]



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", help="where certificates and the config go (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tessera-demo-"))
    init_certs(work / "certs", ["bank", "fintech"], overwrite=True)
    cfg = write_federation(work / "fed.toml", name="demo", router=f"127.0.0.1:{free_port()}",
                           parties={"bank": "active", "fintech": "passive"}, timeout_s=30)
    print(f"federation config {cfg}, certificates in {work / 'certs'}")
    py = sys.executable
    router = subprocess.Popen([py, "-m", "party.router", "--config", str(cfg)], cwd=ROOT)
    try:
        time.sleep(0.5)
        procs = [
            subprocess.Popen([py, "-m", "examples.transport_demo.party_main", "--config", str(cfg),
                              "--party", name], cwd=ROOT)
            for name in ("fintech", "bank")
        ]
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        router.terminate()
        router.wait(timeout=10)
    ok = codes == [0, 0]
    print("demo finished: " + ("both parties succeeded" if ok else f"exit codes {codes}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
