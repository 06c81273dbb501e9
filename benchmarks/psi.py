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
import contextlib
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._emit import emit  # noqa: E402


def make_ids(name: str, n: int, overlap: float, seed: int) -> Any:
    """Party ``name``'s IDs, shuffled: ``overlap * n`` shared, the rest its own.

    A pandas ``string[pyarrow]`` column (what ``pd.read_csv(..., dtype_backend="pyarrow")``
    or a Parquet file gives), built in chunks: ≈ 15 bytes per ID instead of ≈ 70
    for a list of Python strings, so 10M IDs fit in 150 MB.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    shared = int(n * overlap)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}-{name}".encode()).digest()[:8], "little"))
    perm = rng.permutation(n)
    chunks = []
    for a in range(0, n, 1 << 20):
        chunks.append(pa.array([f"C{i:010d}" if i < shared else f"{name}-{i - shared:010d}"
                                for i in perm[a : a + (1 << 20)].tolist()], type=pa.string()))
    del perm
    arr = pa.chunked_array(chunks, type=pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(arr))


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0


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
        "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
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


SPU_REF = r"""
import json, resource, sys, time
from psi._spu_worker import load_spu
job = json.loads(sys.argv[1])
ls, lp = load_spu()
desc = ls.link.Desc()
desc.id = job["link_id"]
for name, ep in job["parties"]:
    desc.add_party(name, ep)
desc.enable_ssl = True
for o in (desc.client_ssl_opts, desc.server_ssl_opts):
    o.cert.certificate_path, o.cert.private_key_path = job["cert"], job["key"]
    o.verify.ca_file_path, o.verify.verify_depth = job["ca"], 1
desc.recv_timeout_ms = 3600 * 1000
desc.connect_retry_times, desc.connect_retry_interval_ms = 300, 200
desc.retry_opts.retry_interval_ms = 100
desc.retry_opts.retry_interval_incr_ms = 100
desc.retry_opts.max_retry_interval_ms = 1000
desc.retry_opts.max_retry = 10
t = time.perf_counter()
ctx = ls.link.create_brpc(desc, job["rank"])
cfg = lp.PsiExecuteConfig()
cfg.protocol_conf.protocol = {"rr22": lp.PsiProtocol.PROTOCOL_RR22, "kkrt": lp.PsiProtocol.PROTOCOL_KKRT}[job["protocol"]]
cfg.protocol_conf.receiver_rank = 0
cfg.protocol_conf.broadcast_result = True
cfg.input_params.path = job["input"]
cfg.input_params.selected_keys = ["id"]
cfg.input_params.keys_unique = True
cfg.output_params.path = job["output"]
rep = lp.psi_execute(cfg, ctx)
secs = time.perf_counter() - t
import os
open(job["result"] + ".tmp", "w").write(json.dumps({"seconds": secs, "shared": int(rep.intersection_count),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
os.replace(job["result"] + ".tmp", job["result"])
ctx.barrier()
os._exit(0)
"""


def write_party_csv(path: Path, ids: Any, seed: int) -> None:
    """The user's file: id and three feature columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(ids)
    pd.DataFrame({"id": ids, "x0": rng.normal(size=n).round(4), "x1": rng.integers(0, 100, n),
                  "x2": rng.normal(size=n).round(4)}).to_csv(path, index=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


def _wait_rss(proc: subprocess.Popen[Any]) -> tuple[int, float]:
    """Wait for ``proc``: (exit code, its peak RSS in MB)."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru.ru_maxrss / 1024.0


def run_spu_bench(args: argparse.Namespace) -> int:
    """--protocol rr22/kkrt: vfl.align end to end, then (with --reference spu) spu itself."""
    from party.testing import grpc_federation

    names = ("bank", "fintech")
    cond: dict[str, Any] = {"n": args.n, "overlap": args.overlap, "protocol": args.protocol,
                            "load_before": round(os.getloadavg()[0], 2),
                            "setting": "2 processes on localhost; router gRPC+mTLS; spu brpc link mTLS"}
    with tempfile.TemporaryDirectory() as d, grpc_federation(list(names), directory=d) as (config, _r):
        dd = Path(d)
        for i, name in enumerate(names):
            write_party_csv(dd / f"{name}.csv", make_ids(name, args.n, args.overlap, args.seed), i)
        eps = {n: f"127.0.0.1:{_free_port()}" for n in names}
        _bench_federation(dd, config.router, names, eps)
        bk = ["--buckets", str(args.buckets)] if args.buckets else []
        if args.buckets:
            cond["buckets"] = args.buckets
        reps, rss, wall = _align_pair(dd, names, {n: ["--protocol", args.protocol, *bk] for n in names},
                                      args.protocol)
        _check_aligned(dd, names, reps, int(args.n * args.overlap))
        cond["load_after"] = round(os.getloadavg()[0], 2)
        secs = max(r["seconds_end_to_end"] for r in reps.values())
        emit("psi_seconds", round(secs, 2), "s", **cond, what="vfl.align end to end (read CSV .. aligned CSV written), slower party",
             psi_process_seconds=round(max(wall.values()), 2),
             spu={n: r["spu"] for n, r in reps.items()},
             largest_bucket={n: r.get("largest_bucket") for n, r in reps.items()},
             align_seconds={n: r["seconds"] for n, r in reps.items()})
        for n in names:
            emit("psi_peak_rss_mb", round(rss[n], 1), "MB", **cond, party=n,
                 spu_worker_peak_rss_mb=round(float(reps[n]["spu"].get("worker_peak_rss_mb") or 0), 1),
                 python_peak_rss_mb=reps[n].get("python_peak_rss_mb"),
                 note="ru_maxrss of the vfl.align process tree: its largest process (python or spu worker)")
            emit("psi_bytes_sent", reps[n]["bytes_sent"], "B", **cond, party=n,
                 note="tessera router traffic only; spu's link has no byte counters")
        if args.reference != "spu":
            return 0
        cond["load_before_reference"] = round(os.getloadavg()[0], 2)
        eps = {n: f"127.0.0.1:{_free_port()}" for n in names}
        refs = {n: subprocess.Popen(
            [sys.executable, "-c", SPU_REF, json.dumps({
                "link_id": "bench-ref", "parties": [[m, eps[m]] for m in names], "rank": i,
                "ca": str(dd / "certs" / "ca.pem"), "cert": str(dd / "certs" / f"{n}.pem"),
                "key": str(dd / "certs" / f"{n}.key"), "protocol": args.protocol,
                "input": str(dd / f"{n}.csv"), "output": str(dd / f"{n}_spu.csv"),
                "result": str(dd / f"{n}_spu.json")})],
            cwd=ROOT, stdout=open(dd / f"{n}_spu.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            env={**os.environ, "TMPDIR": d})
            for i, n in enumerate(names)}
        outs = {}
        from psi.spu import _remove_trace

        # each writes its result before its closing barrier; brpc's shutdown race can leave one
        # waiting there for its peer until the receive timeout: both results in, both stopped
        while not all((dd / f"{n}_spu.json").exists() for n in names):
            dead = [n for n, p in refs.items() if p.poll() is not None and not (dd / f"{n}_spu.json").exists()]
            if dead:
                raise SystemExit(f"spu reference {dead[0]} failed with exit code {refs[dead[0]].returncode}")
            time.sleep(0.05)
        for n, p in refs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
            if p.poll() is None:
                p.kill()
                p.wait()
            _remove_trace(dd / f"{n}_spu.log")  # spu writes /tmp/psi_<id>.trace
            outs[n] = json.loads((dd / f"{n}_spu.json").read_text())
        spu_secs = max(o["seconds"] for o in outs.values())
        ref = {**cond, "impl": f"spu {args.protocol} psi_execute, CSV in, aligned CSV out"}
        emit("psi_spu_seconds", round(spu_secs, 2), "s", **ref,
             peak_rss_mb={n: round(o["peak_rss_mb"], 1) for n, o in outs.items()})
        emit("psi_seconds_over_spu", round(secs / spu_secs, 3), "x", **ref,
             process_seconds_over_spu=round(max(wall.values()) / spu_secs, 3))
        if args.compare_ecdh:
            cond["load_before_ecdh"] = round(os.getloadavg()[0], 2)
            wk = ["--workers", str(args.workers)] if args.workers is not None else []
            ereps, erss, ewall = _align_pair(dd, names, {n: ["--protocol", "ecdh", *wk] for n in names},
                                             "ecdh")
            _check_aligned(dd, names, ereps, int(args.n * args.overlap))
            cond["load_after_ecdh"] = round(os.getloadavg()[0], 2)
            ecdh_secs = max(r["seconds_end_to_end"] for r in ereps.values())
            emit("psi_ecdh_seconds", round(ecdh_secs, 2), "s", **cond,
                 what="vfl.align --protocol ecdh end to end on the same files, slower party",
                 process_seconds=round(max(ewall.values()), 2),
                 peak_rss_mb={n: round(v, 1) for n, v in erss.items()})
            emit("psi_rr22_speedup_over_ecdh" if args.protocol == "rr22" else f"psi_{args.protocol}_speedup_over_ecdh",
                 round(ecdh_secs / secs, 2), "x", **cond,
                 what=f"tessera ECDH end to end / tessera {args.protocol} end to end, same files, same run")
    return 0


def _bench_federation(dd: Path, router: str, names: tuple[str, ...], eps: dict[str, str] | None = None) -> Path:
    toml = [f'[federation]\nname = "bench"\nrouter = "{router}"\ntimeout_s = 3600\n',
            f'[tls]\nca = "{dd / "certs" / "ca.pem"}"\n']
    toml += [f'[parties.{n}]\nrole = "party"\n' + (f'psi_endpoint = "{eps[n]}"\n' if eps else "")
             for n in names]
    (dd / "fed.toml").write_text("\n".join(toml))
    return dd / "fed.toml"


def _align_pair(dd: Path, names: tuple[str, ...], extra: dict[str, list[str]], tag: str,
                output: bool = True) -> tuple[dict[str, dict[str, Any]], dict[str, float], dict[str, float]]:
    """Run ``python -m vfl.align`` for both parties: (reports, peak RSS MB, process wall seconds)."""
    t0 = time.perf_counter()
    procs = {n: subprocess.Popen(
        [sys.executable, "-m", "vfl.align", "--config", str(dd / "fed.toml"), "--party", n,
         "--input", str(dd / f"{n}.csv"), "--id-column", "id",
         *(["--output", str(dd / f"{n}_out.csv")] if output else []),
         "--report", str(dd / f"{n}_{tag}.json"), "--no-progress", *extra[n]],
        cwd=ROOT, stdout=subprocess.DEVNULL) for n in names}
    rss, wall = {}, {}
    for n, p in procs.items():
        rc, rss[n] = _wait_rss(p)
        wall[n] = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"vfl.align {n} ({tag}) failed with exit code {rc}")
    reps = {n: json.loads((dd / f"{n}_{tag}.json").read_text()) for n in names}
    return reps, rss, wall


def _check_aligned(dd: Path, names: tuple[str, ...], reps: dict[str, dict[str, Any]], expect: int) -> None:
    """Both found ``expect`` shared rows and wrote them in the same order."""
    import pandas as pd

    for n, r in reps.items():
        if r["shared_rows"] != expect:
            raise SystemExit(f"{n} found {r['shared_rows']} shared, expected {expect}")
    ids = [pd.read_csv(dd / f"{n}_out.csv", usecols=["id"], dtype=str)["id"] for n in names]
    if not ids[0].equals(ids[1]):
        raise SystemExit("the two aligned files differ in order")


def client_ids(n_server: int, m: int, overlap: float, seed: int) -> Any:
    """The client's ``m`` IDs: ``overlap * m`` of the server's (``make_ids(.., 1.0)``: C0..), the rest its own."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed + 1)
    shared = int(m * overlap)
    ids = [f"C{i:010d}" for i in rng.choice(n_server, size=shared, replace=False).tolist()]
    ids += [f"fintech-{i:010d}" for i in range(m - shared)]
    rng.shuffle(ids)
    return pd.Series(ids, dtype="string[pyarrow]")


def run_ub_bench(args: argparse.Namespace) -> int:
    """--mode unbalanced: vfl.align's offline phase, then its online phase, end to end."""
    from party.testing import grpc_federation

    names = ("bank", "fintech")
    cond: dict[str, Any] = {"n_server": args.n, "n_client": args.n_client, "overlap": args.overlap,
                            "load_before": round(os.getloadavg()[0], 2),
                            "setting": "2 vfl.align processes on localhost; router gRPC+mTLS; "
                                       "ECDH-OPRF (ristretto255) with a cache"}
    with tempfile.TemporaryDirectory() as d, grpc_federation(list(names), directory=d) as (config, _r):
        dd = Path(d)
        write_party_csv(dd / "bank.csv", make_ids("bank", args.n, 1.0, args.seed), 0)
        write_party_csv(dd / "fintech.csv", client_ids(args.n, args.n_client, args.overlap, args.seed), 1)
        _bench_federation(dd, config.router, names)
        wk = ["--workers", str(args.workers)] if args.workers is not None else []
        ub = {n: ["--mode", "unbalanced", "--cache", str(dd / f"cache-{n}"), *wk] for n in names}
        reps, rss, wall = _align_pair(dd, names, {n: [*ub[n], "--phase", "offline"] for n in names},
                                      "offline", output=False)
        cond["load_after_offline"] = round(os.getloadavg()[0], 2)
        off = max(r["seconds_end_to_end"] for r in reps.values())
        emit("psi_ub_offline_seconds", round(off, 2), "s", **cond,
             what="vfl.align --phase offline end to end (read CSV .. cache written), slower party",
             protocol_seconds={n: r["unbalanced"]["seconds"] for n, r in reps.items()},
             process_seconds={n: round(w, 2) for n, w in wall.items()},
             peak_rss_mb={n: round(v, 1) for n, v in rss.items()},
             worker_peak_rss_mb={n: r.get("unbalanced", {}).get("worker_peak_rss_mb") for n, r in reps.items()},
             bytes_sent={n: r["bytes_sent"] for n, r in reps.items()},
             cache_bytes=reps["fintech"]["unbalanced"]["cache_bytes"])
        cond["load_before_online"] = round(os.getloadavg()[0], 2)
        reps, rss, wall = _align_pair(dd, names, ub, "online")
        cond["load_after_online"] = round(os.getloadavg()[0], 2)
        _check_aligned(dd, names, reps, int(args.n_client * args.overlap))
        emit("psi_ub_online_seconds", round(reps["fintech"]["unbalanced"]["phase_seconds"], 2), "s", **cond,
             what="the online phase at the querying client: from the confirmed run handshake to its "
                  "result (blind, evaluate, unblind, look up, confirm)",
             phase_seconds={n: r["unbalanced"]["phase_seconds"] for n, r in reps.items()},
             handshake_seconds={n: r["unbalanced"]["handshake_seconds"] for n, r in reps.items()},
             end_to_end_seconds={n: r["seconds_end_to_end"] for n, r in reps.items()},
             end_to_end_note="each party's read CSV .. aligned CSV written; the client's includes "
                             "waiting for the server to read and normalise its whole file again",
             process_seconds={n: round(w, 2) for n, w in wall.items()},
             peak_rss_mb={n: round(v, 1) for n, v in rss.items()},
             bytes_sent={n: r["bytes_sent"] for n, r in reps.items()})
    return 0


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
