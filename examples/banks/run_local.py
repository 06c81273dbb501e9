"""Three banks and an aggregator as four processes on localhost: FedAvg + SecAgg+ over gRPC mTLS.

    python -m examples.banks.run_local [--smoke] [--rounds 10] [--workdir DIR]

Makes a CA and certificates, writes federation.toml (aggregator = server; bank_a,
bank_b, bank_c = clients), starts ``examples.banks.aggregator`` and three
``examples.banks.bank`` processes. ``--smoke``: 2 rounds on 1,000 rows per bank.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from examples.banks.task import FILES
from party.certs import init_certs
from party.config import write_federation
from party.local import free_port

ROOT = Path(__file__).resolve().parents[2]



def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.smoke else 10)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tessera-banks-"))
    banks = sorted(FILES)
    init_certs(work / "certs", ["aggregator", *banks], overwrite=True)
    fed = write_federation(work / "federation.toml", name="credit-hfl",
                           router=f"127.0.0.1:{free_port()}",
                           parties={"aggregator": "server", **dict.fromkeys(banks, "client")})
    py = sys.executable
    limit = ["--limit", "1000"] if args.smoke else []
    procs = [subprocess.Popen([py, "-m", "examples.banks.aggregator", "--federation", str(fed),
                               "--rounds", str(rounds), "--out", str(work / "out")], cwd=ROOT)]
    procs += [subprocess.Popen([py, "-m", "examples.banks.bank", "--federation", str(fed),
                                "--name", b, *limit], cwd=ROOT) for b in banks]
    try:
        codes = [p.wait(timeout=1800) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    ok = codes == [0] * len(procs)
    print(f"banks: {'done' if ok else f'exit codes {codes}'}; history in {work / 'out'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
