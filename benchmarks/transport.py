"""Transport benchmark: throughput and latency, in memory and through the gRPC router with mTLS.

    python -m benchmarks.transport [--mb 256] [--pings 2000]

Prints JSON lines: MB/s for one float32 array party->party (through the router
on localhost with mutual TLS, and in memory), and round-trip latency p50/p99 for
a 1 KB message on both transports. Sender and receiver are threads of this
process; the router runs in a separate process (as deployed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._emit import emit
from party import InMemoryNetwork, Party, Tag
from party.certs import init_certs
from party.config import load_federation, write_federation
from party.grpc_transport import connect

ROOT = Path(__file__).resolve().parents[1]


def throughput(a: Party, b: Party, arr: np.ndarray, reps: int) -> float:
    best = 0.0
    for r in range(reps):
        tag = Tag("bench", "tp", r)
        t0 = time.perf_counter()
        th = threading.Thread(target=a.send, args=("b", tag, arr))
        th.start()
        got = b.recv("a", tag, timeout_s=600)
        th.join()
        dt = time.perf_counter() - t0
        assert got.nbytes == arr.nbytes
        best = max(best, arr.nbytes / 1e6 / dt)
        del got
    return best


def latency(a: Party, b: Party, n: int) -> tuple[float, float]:
    msg = np.zeros(1024, dtype=np.uint8)
    stop = threading.Event()

    def echo() -> None:
        for i in range(n + 50):
            m = b.recv("a", Tag("ping", "", i), timeout_s=30)
            b.send("a", Tag("pong", "", i), m)

    th = threading.Thread(target=echo)
    th.start()
    times = []
    for i in range(n + 50):
        t0 = time.perf_counter()
        a.send("b", Tag("ping", "", i), msg)
        a.recv("b", Tag("pong", "", i), timeout_s=30)
        if i >= 50:
            times.append((time.perf_counter() - t0) * 1e3)
    th.join()
    stop.set()
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def run_peer(cfg_path: str, reps: int, pings: int) -> None:
    """The receiving party, in its own process: acks each array, echoes each ping."""
    with connect(load_federation(cfg_path), "b") as b:
        b.send("a", Tag("bench", "ready"), True)
        for r in range(reps):
            got = b.recv("a", Tag("bench", "tp", r), timeout_s=600)
            b.send("a", Tag("bench", "ack", r), got.nbytes)
            del got
        for i in range(pings + 50):
            b.send("a", Tag("pong", "", i), b.recv("a", Tag("ping", "", i), timeout_s=30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer", help=argparse.SUPPRESS)  # internal: run as the receiving party
    args = ap.parse_args()
    if args.peer:
        return run_peer(args.peer, args.reps, args.pings)
    arr = np.random.default_rng(0).standard_normal(args.mb * (1 << 20) // 4).astype(np.float32)
    cond = {"array_mb": args.mb, "dtype": "float32", "cpus": os.cpu_count(), "host": "localhost"}

    net = InMemoryNetwork(["a", "b"])
    a, b = Party("a", net.transport("a")), Party("b", net.transport("b"))
    emit("inmemory_throughput", round(throughput(a, b, arr, args.reps), 1), "MB/s", **cond)
    p50, p99 = latency(a, b, args.pings)
    emit("inmemory_rtt_p50", round(p50, 4), "ms", msg_bytes=1024, n=args.pings)
    emit("inmemory_rtt_p99", round(p99, 4), "ms", msg_bytes=1024, n=args.pings)

    with tempfile.TemporaryDirectory() as d:
        init_certs(Path(d) / "certs", ["a", "b"])
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg_path = write_federation(Path(d) / "fed.toml", name="bench", router=f"127.0.0.1:{port}",
                                    parties={"a": "party", "b": "party"})
        router = subprocess.Popen([sys.executable, "-m", "party.router", "--config", str(cfg_path)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cfg = load_federation(cfg_path)
            ga = connect(cfg, "a")
            peer = subprocess.Popen([sys.executable, "-m", "benchmarks.transport", "--peer", str(cfg_path),
                                     "--reps", str(args.reps), "--pings", str(args.pings)], cwd=ROOT)
            ga.recv("b", Tag("bench", "ready"), timeout_s=60)  # time the transfer, not b's start-up
            best = 0.0
            for r in range(args.reps):
                t0 = time.perf_counter()
                ga.send("b", Tag("bench", "tp", r), arr)
                ga.recv("b", Tag("bench", "ack", r), timeout_s=600)
                best = max(best, arr.nbytes / 1e6 / (time.perf_counter() - t0))
            emit("grpc_router_mtls_throughput", round(best, 1), "MB/s", **cond,
                 path="party process -> router process -> party process", tls="mTLS ECDSA P-256")
            times = []
            msg = np.zeros(1024, dtype=np.uint8)
            for i in range(args.pings + 50):
                t0 = time.perf_counter()
                ga.send("b", Tag("ping", "", i), msg)
                ga.recv("b", Tag("pong", "", i), timeout_s=30)
                if i >= 50:
                    times.append((time.perf_counter() - t0) * 1e3)
            peer.wait(60)
            p50, p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
            emit("grpc_rtt_p50", round(p50, 3), "ms", msg_bytes=1024, n=args.pings, path="via router")
            emit("grpc_rtt_p99", round(p99, 3), "ms", msg_bytes=1024, n=args.pings, path="via router")
            ga.close()
        finally:
            router.terminate()
            router.wait()


if __name__ == "__main__":
    main()
