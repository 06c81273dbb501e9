"""The PSI benchmarks that run ``python -m vfl.align`` processes (``benchmarks/psi.py``).

``--protocol rr22/kkrt`` (``run_spu_bench``: vfl.align end to end through spu, then with
``--reference spu`` spu's own ``psi_execute`` on the same files, and with ``--compare-ecdh``
vfl.align's ECDH on them too) and ``--mode unbalanced`` (``run_ub_bench``: the offline phase,
then the online phase); the parties' CSV files and IDs (``make_ids``, shared with the
in-memory and gRPC runs of ``benchmarks/psi.py``, and ``client_ids``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._emit import emit, interleaved, process_tree

ROOT = Path(__file__).resolve().parent.parent


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


SPU_REF = r"""
import json, sys, time
from psi._spu_worker import link_desc, load_spu
job = json.loads(sys.argv[1])
ls, lp = load_spu()
desc = link_desc(ls, job)
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
from party.files import peak_rss_mb  # VmHWM: ru_maxrss would include the harness's size
open(job["result"] + ".tmp", "w").write(json.dumps({"seconds": secs, "shared": int(rep.intersection_count),
                  "peak_rss_mb": peak_rss_mb()}))
os.replace(job["result"] + ".tmp", job["result"])
ctx.barrier()
os._exit(0)
"""


def write_party_csv(path: Path, ids: Any, seed: int) -> None:
    """The user's file: id and three feature columns, written 1M rows at a time with Arrow
    (pandas' ``to_csv`` of 100M rows would take minutes and ~10 GB)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    col = pa.chunked_array(pa.array(ids)) if not isinstance(ids, pa.ChunkedArray) else ids
    n, step = len(col), 1 << 20
    with open(path, "wb") as f:
        for a in range(0, max(n, 1), step):
            m = min(step, n - a)
            t = pa.table({"id": col.slice(a, m), "x0": rng.normal(size=m).round(4),
                          "x1": rng.integers(0, 100, m), "x2": rng.normal(size=m).round(4)})
            pacsv.write_csv(t, f, write_options=pacsv.WriteOptions(include_header=a == 0,
                                                                  quoting_style="none"))


def _free_port() -> int:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


def _wait_rss(procs: dict[str, subprocess.Popen[Any]], t0: float) -> tuple[dict[str, float], dict[str, float]]:
    """Wait for every process: (the largest peak RSS of a process of each one's tree, MB;
    each one's wall seconds since ``t0``).

    Sampled every 0.2 s as each process's own ``VmHWM`` (:func:`party.files.peak_rss_mb`),
    not ``wait4``'s ``ru_maxrss``: that carries this benchmark's own size (it holds both
    parties' IDs: 3.3 GB at 100M) over into every child it starts."""
    from party.files import peak_rss_mb

    peak = dict.fromkeys(procs, 0.0)
    wall: dict[str, float] = {}
    while len(wall) < len(procs):
        for n, p in procs.items():
            if n in wall:
                continue
            for pid in process_tree(p.pid):
                peak[n] = max(peak[n], peak_rss_mb(pid))
            if p.poll() is not None:
                wall[n] = time.perf_counter() - t0
        time.sleep(0.2)
    return peak, wall


def run_spu_bench(args: argparse.Namespace) -> int:
    """--protocol rr22/kkrt: vfl.align end to end, then (with --reference spu) spu itself.

    With ``--repeats R`` both run R times, interleaved (T S S T T S ...: a change in the
    machine's load falls on both), and the figures are medians over the runs."""
    from party.testing import grpc_federation

    names = ("bank", "fintech")
    repeats = max(1, args.repeats)
    cond: dict[str, Any] = {"n": args.n, "overlap": args.overlap, "protocol": args.protocol,
                            "load_before": round(os.getloadavg()[0], 2),
                            "setting": "2 processes on localhost; router gRPC+mTLS; spu brpc link mTLS"}
    if repeats > 1:
        cond["repeats"] = repeats
    with tempfile.TemporaryDirectory() as d, grpc_federation(list(names), directory=d) as (config, _r):
        dd = Path(d)
        for i, name in enumerate(names):
            write_party_csv(dd / f"{name}.csv", make_ids(name, args.n, args.overlap, args.seed), i)
        eps = {n: f"127.0.0.1:{_free_port()}" for n in names}
        _bench_federation(dd, config.router, names, eps)
        bk = ["--buckets", str(args.buckets)] if args.buckets else []
        if args.buckets:
            cond["buckets"] = args.buckets
        ours: list[tuple[float, float, dict[str, Any], dict[str, float]]] = []
        refs: list[tuple[float, dict[str, Any]]] = []
        order = interleaved("t", "s", repeats) if args.reference == "spu" else ["t"] * repeats
        for what in order:
            if what == "t":
                reps, rss, wall = _align_pair(dd, names, {n: ["--protocol", args.protocol, *bk]
                                                          for n in names}, args.protocol)
                _check_aligned(dd, names, reps, int(args.n * args.overlap))
                ours.append((max(r["seconds_end_to_end"] for r in reps.values()),
                             max(wall.values()), reps, rss))
            else:
                refs.append(_spu_reference(args, dd, names))
        cond["load_after"] = round(os.getloadavg()[0], 2)
        secs = statistics.median(o[0] for o in ours)
        proc_secs = statistics.median(o[1] for o in ours)
        reps = ours[0][2]
        runs = {"runs_s": [round(o[0], 2) for o in ours]} if repeats > 1 else {}
        emit("psi_seconds", round(secs, 2), "s", **cond, what="vfl.align end to end (read CSV .. aligned CSV written), slower party",
             psi_process_seconds=round(proc_secs, 2), **runs,
             spu={n: r["spu"] for n, r in reps.items()},
             largest_bucket={n: r.get("largest_bucket") for n, r in reps.items()},
             align_seconds={n: r["seconds"] for n, r in reps.items()})
        for n in names:
            emit("psi_peak_rss_mb", round(max(o[3][n] for o in ours), 1), "MB", **cond, party=n,
                 spu_worker_peak_rss_mb=round(float(reps[n]["spu"].get("worker_peak_rss_mb") or 0), 1),
                 python_peak_rss_mb=reps[n].get("python_peak_rss_mb"),
                 note="VmHWM of the vfl.align process tree, sampled: its largest process (python or spu worker)")
            emit("psi_bytes_sent", reps[n]["bytes_sent"], "B", **cond, party=n,
                 note="tessera router traffic only; spu's link has no byte counters")
        if args.reference != "spu":
            return 0
        spu_secs = statistics.median(r[0] for r in refs)
        ref = {**cond, "impl": f"spu {args.protocol} psi_execute, CSV in, aligned CSV out"}
        emit("psi_spu_seconds", round(spu_secs, 2), "s", **ref,
             **({"runs_s": [round(r[0], 2) for r in refs]} if repeats > 1 else {}),
             peak_rss_mb={n: round(o["peak_rss_mb"], 1) for n, o in refs[0][1].items()})
        emit("psi_seconds_over_spu", round(secs / spu_secs, 3), "x", **ref,
             statistic="median over median" if repeats > 1 else "one run each",
             process_seconds_over_spu=round(proc_secs / spu_secs, 3))
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


def _spu_reference(args: argparse.Namespace, dd: Path, names: tuple[str, ...]) -> tuple[float, dict[str, Any]]:
    """One run of spu's own ``psi_execute`` on the parties' files: (slower party's seconds, results)."""
    eps = {n: f"127.0.0.1:{_free_port()}" for n in names}
    link_id = f"bench-ref-{os.urandom(4).hex()}"  # the same at both parties, fresh per run
    for n in names:
        (dd / f"{n}_spu.json").unlink(missing_ok=True)
    refs = {n: subprocess.Popen(
        [sys.executable, "-c", SPU_REF, json.dumps({
            "link_id": link_id, "parties": [[m, eps[m]] for m in names], "rank": i,
            "recv_timeout_ms": 3600 * 1000, "connect_retry_times": 300,
            "connect_retry_interval_ms": 200,
            "ca": str(dd / "certs" / "ca.pem"), "cert": str(dd / "certs" / f"{n}.pem"),
            "key": str(dd / "certs" / f"{n}.key"), "protocol": args.protocol,
            "input": str(dd / f"{n}.csv"), "output": str(dd / f"{n}_spu.csv"),
            "result": str(dd / f"{n}_spu.json")})],
        cwd=ROOT, stdout=open(dd / f"{n}_spu.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        env={**os.environ, "TMPDIR": str(dd)})
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
    return max(o["seconds"] for o in outs.values()), outs


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
    rss, wall = _wait_rss(procs, t0)
    for n, p in procs.items():
        if p.returncode != 0:
            raise SystemExit(f"vfl.align {n} ({tag}) failed with exit code {p.returncode}")
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
