"""Flower quick start, ported: the server and two clients as three processes on localhost (mTLS).

    python -m examples.flower_tutorial.run_local [--smoke] [--cifar10 PATH] [--workdir DIR]

Makes a CA and certificates, writes federation.toml, starts server.py and two
client.py processes and waits. ``--smoke`` trains each client on 2,000 images with
SGD lr 0.02: the quick start's lr 0.001 stays on its initial plateau for the ~200
steps a smoke run has (accuracy 0.10-0.12 after 3 rounds), lr 0.02 reaches about
0.9 on MNIST.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from party.certs import init_certs
from party.config import write_federation
from party.local import free_port

ROOT = Path(__file__).resolve().parents[2]



def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="2,000 images per client, lr 0.02")
    ap.add_argument("--cifar10", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tessera-flower-"))
    init_certs(work / "certs", ["server", "client_0", "client_1"], overwrite=True)
    fed = write_federation(work / "federation.toml", name="flower-tutorial",
                           router=f"127.0.0.1:{free_port()}",
                           parties={"server": "server", "client_0": "client", "client_1": "client"})
    py = sys.executable
    extra = (["--limit", "2000", "--lr", "0.02"] if args.smoke else []) + (["--cifar10", args.cifar10] if args.cifar10 else [])
    server = subprocess.Popen([py, "-m", "examples.flower_tutorial.server", "--federation", str(fed),
                               "--rounds", str(args.rounds), "--out", str(work / "out")], cwd=ROOT)
    clients = [subprocess.Popen([py, "-m", "examples.flower_tutorial.client", "--federation", str(fed),
                                 "--name", f"client_{i}", *extra], cwd=ROOT) for i in range(2)]
    try:
        codes = [p.wait(timeout=1800) for p in [server, *clients]]
    finally:
        for p in [server, *clients]:
            if p.poll() is None:
                p.kill()
    ok = codes == [0, 0, 0]
    print(f"flower tutorial: {'done' if ok else f'exit codes {codes}'}; history in {work / 'out'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
