"""The classic quick start, unchanged but for the import, under tessera and under Flower 1.42.

    .venv/bin/python -m benchmarks.quickstart             # tessera, then Flower, in this run
    .venv/bin/python -m benchmarks.quickstart --no-flower

examples/quickstart_classic/{server,client,task}.py run as three processes (a server and
two clients) with no certificate, no TOML and no federation variable: tessera makes its
development federation (in a fresh state directory, as on a first run: CA, router and
client certificates included in the time). The same files with ``import flwr as fl``
run under Flower 1.42 (``start_server`` / ``start_numpy_client``, deprecated there but
working; the ``bench`` extra installs it). The only edit to the files is the port.

Figures: ``quickstart_rounds_completed`` (3), ``quickstart_seconds`` (server start to
server exit), ``quickstart_flower_seconds``, ``quickstart_flower_rounds_completed``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._emit import emit
from party.local import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart_classic"


def _copy(dst: Path, port: int, flower: bool) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("client.py", "server.py", "task.py"):
        text = (EXAMPLE / name).read_text().replace("8080", str(port))
        if flower:
            text = text.replace("import hfl as fl", "import flwr as fl")
        (dst / name).write_text(text)
    return dst


def run(flower: bool, work: Path, timeout_s: float) -> tuple[int, float, str]:
    """(rounds completed, seconds from server start to its exit, server output)."""
    port = free_port()
    app = _copy(work / ("flower" if flower else "tessera"), port, flower)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_") or k == "TESSERA_DATA"}
    env.update(TESSERA_STATE_DIR=str(work / "state"), PYTHONPATH=str(ROOT),
               TESSERA_DATA=os.environ.get("TESSERA_DATA", str(ROOT / "data")))
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "server.py"], cwd=app, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = [open(app / f"client_{i}.log", "w") for i in range(2)]  # noqa: SIM115
    clients = [subprocess.Popen([sys.executable, "client.py"], cwd=app, env=env,
                                stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        out, _ = server.communicate(timeout=timeout_s)
        seconds = time.perf_counter() - t0
        for i, c in enumerate(clients):
            try:
                c.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f"client {i} still running 60 s after the server exited; its output:\n"
                      + (app / f"client_{i}.log").read_text()[-3000:], file=sys.stderr)
    finally:
        for log in logs:
            log.close()
        procs: list[subprocess.Popen[Any]] = [server, *clients]
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if flower:  # Flower logs "[ROUND n]" and, at the end, "Run finished 3 round(s)"
        m = re.search(r"Run finished (\d+) round", out)
        rounds = int(m.group(1)) if m and server.returncode == 0 else 0
    else:  # tessera's progress bar: "n/3 [..., ok=2, failed=0 ...]"
        done = [int(n) for n in re.findall(r"(\d+)/\d+ \[[^\]]*ok=2, failed=0", out)]
        rounds = max(done, default=0) if server.returncode == 0 else 0
    if server.returncode != 0:
        print(out[-3000:], file=sys.stderr)
    return rounds, seconds, out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-flower", action="store_true", help="skip the Flower 1.42 reference")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tessera-quickstart-") as tmp:
        work = Path(tmp)
        load = os.getloadavg()
        rounds, secs, out = run(False, work, args.timeout)
        cond = {"processes": 3, "clients": 2, "num_rounds": 3, "train_images_per_client": 2000,
                "loadavg_1m": round(load[0], 2), "dev_federation": "fresh state dir",
                "dev_mode_notice": "DEVELOPMENT MODE" in out}
        emit("quickstart_rounds_completed", rounds, "rounds", **cond)
        emit("quickstart_seconds", round(secs, 1), "s", **cond)
        if not args.no_flower:
            try:
                import flwr  # noqa: F401
            except ImportError:
                print("flwr is not installed: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
                return 1
            from importlib.metadata import version

            load = os.getloadavg()
            frounds, fsecs, _ = run(True, work, args.timeout)
            fcond = {**cond, "flwr": version("flwr"), "loadavg_1m": round(load[0], 2),
                     "dev_federation": "n/a (Flower's insecure gRPC)"}
            del fcond["dev_mode_notice"]
            emit("quickstart_flower_rounds_completed", frounds, "rounds", **fcond)
            emit("quickstart_flower_seconds", round(fsecs, 1), "s", **fcond)
    return 0 if rounds == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
