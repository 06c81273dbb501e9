"""PSI benchmark: two parties of n IDs each, a given overlap, over gRPC (two processes) or in memory.

    python benchmarks/psi.py --n 100000 --overlap 0.5                # two processes over gRPC + mTLS
    python benchmarks/psi.py --n 100000 --overlap 0.5 --inprocess    # both parties as threads, in memory
    python benchmarks/psi.py --n 100000 --reference                  # also time openmined-psi 2.0.6
    python benchmarks/psi.py --n 1000000 --protocol rr22 --reference spu   # vfl.align end to end vs spu
    python benchmarks/psi.py --mode unbalanced --n 10000000 --n-client 10000   # offline, then online
    python benchmarks/psi.py --n 10000000 --protocol rr22 --buckets 10   # streamed, bounded memory

With ``--mode unbalanced`` the server (``bank``, ``--n`` IDs) and the client (``fintech``,
``--n-client`` IDs, ``--overlap`` of them the server's) are ``python -m vfl.align``
processes over the router: first ``--phase offline`` (``psi_ub_offline_seconds``: the
slower party, reading its file to its cache written), then ``--phase online``
(``psi_ub_online_seconds``: the online phase at the client, from the confirmed run
handshake to its result; the conditions add each party's end to end, reading its file to
its aligned file written, where the client's includes waiting for the server to read and
normalise its ``--n`` rows again).

With ``--protocol rr22`` (or ``kkrt``) each party is a ``python -m vfl.align`` process
on its own CSV (id + 3 feature columns) writing its aligned CSV, over a router with
mutual TLS and spu's direct link (``psi_endpoint``); ``psi_seconds`` is the slower
party's end to end time (reading its file to its written output, the report's
``seconds_end_to_end``; ``psi_process_seconds`` adds interpreter start-up).
``--reference spu`` then runs spu's own ``psi_execute`` on the same files (same
protocol, same mutual TLS, aligned CSV out), timed around link set-up and
``psi_execute``, and prints ``psi_spu_seconds`` and ``psi_seconds_over_spu``.
``psi_bytes_sent`` counts tessera's router traffic only: spu 0.9.5's link exposes no
byte counters.

Prints JSON lines (figure, value, unit, conditions): wall seconds, the floor (the
same number of group operations timed bare in one process, divided by the
cores), their ratio, peak RSS and bytes sent per party. The intersection is
checked against the known overlap. The machine may be shared: the conditions
record the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._emit import emit, peak_rss_mb  # noqa: E402
from benchmarks._psi_align import make_ids, run_spu_bench, run_ub_bench  # noqa: E402


def run_party(party: Any, n: int, overlap: float, seed: int, workers: int | None) -> dict[str, Any]:
    from psi import PsiConfig, run_psi

    ids = make_ids(party.name, n, overlap, seed)
    t0 = time.perf_counter()
    res = run_psi(party, ids, config=PsiConfig(), timeout_s=3600, workers=workers, progress=False)
    secs = time.perf_counter() - t0
    st = party.transport.stats.snapshot()
    return {
        "party": party.name,
        "seconds": secs,
        "shared": res.size,
        "group_ops": res.group_ops,
        "bytes_sent": st["bytes_sent"],
        "bytes_received": st["bytes_received"],
        "peak_rss_mb": peak_rss_mb(),  # VmHWM: ru_maxrss would include the harness's size
        "worker_peak_rss_mb": res.worker_peak_rss_mb,
    }


def floor_seconds(n: int, cores: int, sample: int = 20000) -> tuple[float, float, float]:
    """(floor for both parties, µs per hash, µs per multiply), timed bare in this process."""
    from psi.group import hash_to_group, mask, random_scalar

    msgs = [f"C{i:010d}".encode() for i in range(sample)]
    t = time.perf_counter()
    pts = hash_to_group(msgs, b"bench")
    t_hash = (time.perf_counter() - t) / sample
    s = random_scalar()
    t = time.perf_counter()
    mask(pts, s)
    t_mul = (time.perf_counter() - t) / sample
    # per party: hash own n, mask own n, mask the peer's n
    total = 2 * n * t_hash + 4 * n * t_mul
    return total / cores, t_hash * 1e6, t_mul * 1e6


def x25519_us(sample: int = 5000) -> float:
    """µs per X25519 scalar multiplication through ``cryptography`` (the alternative group)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    k = X25519PrivateKey.generate()
    pubs = [X25519PrivateKey.generate().public_key() for _ in range(200)]
    t = time.perf_counter()
    for i in range(sample):
        k.exchange(pubs[i % 200])
    return (time.perf_counter() - t) / sample * 1e6


def run_grpc(args: argparse.Namespace) -> list[dict[str, Any]]:
    from party.config import write_federation
    from party.testing import grpc_federation

    with tempfile.TemporaryDirectory() as d, grpc_federation(["bank", "fintech"], directory=d) as (
        config,
        _router,
    ):
        fed = write_federation(Path(d) / "fed.toml", name="bench", router=config.router,
                               parties={"bank": "party", "fintech": "party"}, cert_dir="certs")
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--party-run", name, "--fed", str(fed), "--n", str(args.n),
                 "--overlap", str(args.overlap), "--seed", str(args.seed)]
                + (["--workers", str(args.workers)] if args.workers is not None else []),
                stdout=subprocess.PIPE, text=True, cwd=ROOT,
            )
            for name in ("bank", "fintech")
        ]
        outs = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"party process failed with {p.returncode}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        return outs


def run_inprocess(args: argparse.Namespace) -> list[dict[str, Any]]:
    from party.testing import run_parties

    out = run_parties(
        {n: (lambda p: run_party(p, args.n, args.overlap, args.seed, args.workers))
         for n in ("bank", "fintech")},
        timeout_s=7200,
    )
    return [out["bank"], out["fintech"]]


OPENMINED = r"""
import json, resource, sys, time
import private_set_intersection.python as psi
n, overlap = int(sys.argv[1]), float(sys.argv[2])
shared = int(n * overlap)
client_items = [f"C{i:010d}" for i in range(shared)] + [f"a-{i:010d}" for i in range(n - shared)]
server_items = [f"C{i:010d}" for i in range(shared)] + [f"b-{i:010d}" for i in range(n - shared)]
t = time.perf_counter()
client = psi.client.CreateWithNewKey(True)
server = psi.server.CreateWithNewKey(True)
setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
request = client.CreateRequest(client_items)
response = server.ProcessRequest(request)
inter = client.GetIntersection(setup, response)
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "shared": len(inter),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_reference(args: argparse.Namespace, cond: dict[str, Any]) -> None:
    py = args.reference_python or sys.executable
    try:
        proc = subprocess.run([py, "-c", OPENMINED, str(args.n), str(args.overlap)],
                              capture_output=True, text=True, timeout=7200)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"# openmined-psi reference skipped: {e}", file=sys.stderr)
        return
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"# openmined-psi reference skipped ({py}): {last}", file=sys.stderr)
        return
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = {**cond, "impl": "openmined-psi 2.0.6 (DH PSI, one process, one side learns)"}
    emit("psi_openmined_seconds", round(r["seconds"], 2), "s", **ref)
    emit("psi_openmined_peak_rss_mb", round(r["peak_rss_mb"], 1), "MB", **ref)
    if r["shared"] != int(args.n * args.overlap):
        print(f"# openmined-psi found {r['shared']} shared, expected {int(args.n * args.overlap)}",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="IDs per party")
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, help="worker processes per party (default: all cores)")
    ap.add_argument("--inprocess", action="store_true", help="both parties as threads in memory")
    ap.add_argument("--reference", nargs="?", const="openmined", choices=["openmined", "spu"],
                    help="also time openmined-psi 2.0.6 (default) or, with --protocol rr22/kkrt, spu itself")
    ap.add_argument("--mode", choices=["both", "unbalanced"], default="both",
                    help="unbalanced: --n server IDs against --n-client, offline then online phase")
    ap.add_argument("--n-client", type=int, default=10_000, help="with --mode unbalanced: the client's IDs")
    ap.add_argument("--protocol", choices=["ecdh", "rr22", "kkrt"], default="ecdh",
                    help="rr22/kkrt: vfl.align processes end to end through spu")
    ap.add_argument("--repeats", type=int, default=1,
                    help="with --protocol rr22/kkrt: runs of tessera and of the spu reference, "
                         "interleaved; the figures are medians")
    ap.add_argument("--buckets", type=int,
                    help="with --protocol rr22/kkrt: vfl.align --buckets B (streamed, one spu run per bucket)")
    ap.add_argument("--compare-ecdh", action="store_true",
                    help="with --protocol rr22/kkrt: also run vfl.align --protocol ecdh on the same files")
    ap.add_argument("--reference-python", help="python that has openmined-psi installed")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--party-run", help=argparse.SUPPRESS)
    ap.add_argument("--fed", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.party_run:  # child process: one party over gRPC
        from party.config import load_federation
        from party.grpc_transport import connect

        with connect(load_federation(args.fed), args.party_run) as party:
            print(json.dumps(run_party(party, args.n, args.overlap, args.seed, args.workers)), flush=True)
        return 0

    if args.compare_ecdh and (args.protocol == "ecdh" or args.reference != "spu"):
        raise SystemExit("--compare-ecdh goes with --protocol rr22/kkrt --reference spu")
    if args.mode == "unbalanced":
        return run_ub_bench(args)
    if args.protocol != "ecdh":
        return run_spu_bench(args)
    from psi.group import default_workers

    cores = default_workers()
    cond: dict[str, Any] = {
        "n": args.n, "overlap": args.overlap, "cores": cores,
        "transport": "in-memory threads" if args.inprocess else "gRPC+mTLS, 2 processes",
        "group": "ristretto255 (libsodium via rbcl)",
        "workers_per_party": args.workers if args.workers is not None else cores,
        "load_before": round(os.getloadavg()[0], 2),
    }
    t0 = time.perf_counter()
    parties = run_inprocess(args) if args.inprocess else run_grpc(args)
    wall = time.perf_counter() - t0
    cond["load_after"] = round(os.getloadavg()[0], 2)
    expect = int(args.n * args.overlap)
    for r in parties:
        if r["shared"] != expect:
            raise SystemExit(f"{r['party']} found {r['shared']} shared IDs, expected {expect}")
    secs = max(r["seconds"] for r in parties)
    emit("psi_seconds", round(secs, 2), "s", **cond, wall_with_startup_s=round(wall, 2))
    for r in parties:
        emit("psi_peak_rss_mb", round(r["peak_rss_mb"], 1), "MB", **cond, party=r["party"],
             worker_peak_rss_mb=round(r["worker_peak_rss_mb"], 1))
        emit("psi_bytes_sent", r["bytes_sent"], "B", **cond, party=r["party"])
    if not args.no_floor:
        floor, us_hash, us_mul = floor_seconds(args.n, cores)
        emit("psi_floor_seconds", round(floor, 2), "s", **cond, us_per_hash=round(us_hash, 1),
             us_per_multiply=round(us_mul, 1),
             note="2n hashes + 4n multiplies (both parties), timed bare in one process / cores")
        emit("psi_seconds_over_floor", round(secs / floor, 2), "x", **cond)
        emit("x25519_us_per_multiply", round(x25519_us(), 1), "us", **cond,
             note="cryptography X25519 exchange, for comparison with ristretto255 (not used)")
    if args.reference:
        run_reference(args, cond)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
