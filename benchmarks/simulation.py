"""Simulation at scale: tessera on Ray, tessera in-process, Flower 1.42 on Ray, side by side.

    python -m benchmarks.simulation                 # every figure below, one invocation
    python -m benchmarks.simulation --parts main    # only the three-way comparison
    python -m benchmarks.simulation --parts 10k,secagg --rounds 3

Workload (identical for the three systems): McMahan's 2NN (199,210 parameters) on MNIST,
pathological non-IID (2 shards per client), 1,000 clients, C = 0.1 (100 per round), E = 1,
B = 10, 3 rounds; each client is built from ``client_fn(context)`` and loads its shard in
the process that runs it (MNIST is read once per process and cached there, and each process
reuses one 2NN object per thread, into which every fit first loads the global weights).

Figures (one JSON line each):

- ``sim_round_s_{tessera_ray,tessera_inprocess,flower_ray}``: median round time of rounds
  2–3 (tessera: ``history.rounds[i]["time_s"]``, sampling to aggregation; Flower: from its
  strategy's ``configure_fit`` to the end of ``aggregate_fit``);
- ``sim_overhead_pct_*``: (round time − time during which at least one client was
  training) / round time, median of rounds 2–3; each client reports when it trained
  (``time.perf_counter``, CLOCK_MONOTONIC, shared by all processes of the machine). The
  conditions also give ``idle_capacity_pct``: 1 − Σ training / (round × workers);
- ``sim_peak_rss_mb_*``: peak of the summed RSS of the driver and its Ray worker processes
  (``ray::*``), sampled every 0.25 s from /proc; Ray's own daemons (raylet, GCS) are in the
  conditions as ``peak_tree_rss_mb``;
- ``sim_10k_completed`` / ``sim_10k_round_s``: tessera on Ray, 10,000 clients, C = 0.01;
- ``sim_secagg_1k_round_s`` / ``sim_secagg_1k_over_plain``: SecAgg+ (k-regular graph) on
  Ray with the main workload, over the plain tessera-on-Ray round of the same invocation.

Each system runs in its own child process (``--child``), so peaks and Ray instances never
mix; the load average is recorded before and after each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._emit import emit, process_tree

ROOT = Path(__file__).resolve().parent.parent
MODEL = "2nn"
LR = 0.1
B = 10
_DATA: dict[int, Any] = {}


# ---- the one client every system runs ---------------------------------------------------------


def _shard(num_clients: int, i: int) -> Any:
    """Client ``i``'s shard, cut in this process (MNIST read once per process)."""
    import torch

    from examples.mnist_fedavg.task import load, partition

    if num_clients not in _DATA:
        xtr, ytr, _, _ = load()
        _DATA[num_clients] = (xtr, ytr, partition(ytr, num_clients, non_iid=True, seed=0))
    xtr, ytr, parts = _DATA[num_clients]
    idx = torch.from_numpy(parts[i])
    return xtr[idx], ytr[idx]


def client_fn(context: Any) -> Any:
    """tessera's and Flower's ``client_fn(context)``: the same client for both."""
    import torch

    from benchmarks._mnist_clients import timed_fit
    from examples.mnist_fedavg.task import MnistClient

    torch.set_num_threads(1)
    i = int(context.node_config["partition-id"])
    x, y = _shard(int(context.node_config["num-partitions"]), i)

    class Timed(MnistClient):
        def __init__(self) -> None:  # MnistClient's fields, with this process's one 2NN
            self.cid, self.x, self.y, self.timings = i, x, y, None
            self.model = _model()
            self.epochs, self.batch_size, self.lr = 1, B, LR

        def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
            return timed_fit(super().fit, parameters, config)

    return Timed()


def _model() -> Any:
    """One 2NN per thread, reused by every client it runs: fit() loads the global weights
    into it first, so only construction (≈ 6 ms, as long as a client's training) is saved."""
    from examples.mnist_fedavg.task import make_model

    m = getattr(_MODELS, "model", None)
    if m is None:
        m = _MODELS.model = make_model(MODEL)
    return m


_MODELS = threading.local()


def _fit_config(rnd: int) -> dict[str, Any]:
    return {"server_round": rnd, "epochs": 1, "lr": LR}


def _summary(times: list[float], ivs: list[list[tuple[float, float]]], workers: int) -> dict[str, Any]:
    from benchmarks._mnist_clients import union_s

    over = [100 * max(0.0, t - union_s(iv)) / t for t, iv in zip(times, ivs, strict=True)]
    idle = [100 * max(0.0, 1 - sum(b - a for a, b in iv) / (t * workers))
            for t, iv in zip(times, ivs, strict=True)]
    later = slice(1, None) if len(times) > 1 else slice(None)
    return {"round_s": statistics.median(times[later]), "overhead_pct": statistics.median(over[later]),
            "idle_capacity_pct": statistics.median(idle[later]), "rounds_s": [round(t, 3) for t in times],
            "overhead_per_round": [round(o, 2) for o in over],
            "clients_per_round": [len(iv) for iv in ivs]}


# ---- the systems (each in a child process) ----------------------------------------------------


def _tessera(args: argparse.Namespace, backend: str, secure: bool) -> dict[str, Any]:
    import hfl
    from examples.mnist_fedavg.task import make_model
    from hfl.torch_utils import get_parameters

    ivs: list[list[tuple[float, float]]] = []

    def collect(ms: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        ivs.append([(float(m["t0"]), float(m["t1"])) for _, m in ms])
        return {}

    strategy = hfl.FedAvg(fraction_fit=args.fraction, min_fit_clients=1,
                          min_available_clients=args.clients, fraction_evaluate=0.0,
                          initial_parameters=hfl.ndarrays_to_parameters(get_parameters(make_model(MODEL))),
                          on_fit_config_fn=_fit_config, fit_metrics_aggregation_fn=collect)
    kw: dict[str, Any] = {}
    if backend == "ray":
        kw = {"client_resources": {"num_cpus": 1, "num_gpus": 0},
              "ray_init_args": {"num_cpus": args.workers, "include_dashboard": False,
                                "log_to_driver": False}}
    t0 = time.perf_counter()
    h = hfl.simulate(client_fn, args.clients, strategy=strategy, num_rounds=args.rounds,
                     config=hfl.ServerConfig(round_timeout=args.round_timeout),
                     secure_agg=secure, backend=backend, num_workers=args.workers, **kw)
    wall = time.perf_counter() - t0
    times = [float(r["time_s"]) for r in h.rounds]
    out = _summary(times, ivs, args.workers)
    out.update(wall_s=round(wall, 2), setup_s=round(wall - sum(times), 2),
               fit_results=[r["fit_results"] for r in h.rounds],
               fit_s=[r.get("fit_s") for r in h.rounds], aggregate_s=[r.get("aggregate_s") for r in h.rounds],
               fit_failures=[len(r["fit_failures"]) for r in h.rounds],
               completed=int(len(h.rounds) == args.rounds and all(r["fit_results"] > 0 for r in h.rounds)))
    if secure:
        out["secure_agg"] = [r.get("secure_agg") for r in h.rounds]
    return out


def _flower(args: argparse.Namespace) -> dict[str, Any]:
    import flwr
    from flwr.simulation import start_simulation

    from benchmarks._mnist_clients import timed_flower_fedavg
    from examples.mnist_fedavg.task import make_model
    from hfl.torch_utils import get_parameters

    def fl_client_fn(context: Any) -> Any:
        inner = client_fn(context)

        class Wrapped(flwr.client.NumPyClient):  # the same client behind Flower's NumPyClient
            def get_parameters(self, config: dict[str, Any]) -> Any:
                return inner.get_parameters(config)

            def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
                return inner.fit(parameters, config)

        return Wrapped().to_client()

    strategy, marks = timed_flower_fedavg(
        fail_on_failures=False, fraction_fit=args.fraction, min_fit_clients=1,
        min_available_clients=args.clients, fraction_evaluate=0.0,
        initial_parameters=flwr.common.ndarrays_to_parameters(get_parameters(make_model(MODEL))),
        on_fit_config_fn=_fit_config)
    t0 = time.perf_counter()
    start_simulation(client_fn=fl_client_fn, num_clients=args.clients,
                     config=flwr.server.ServerConfig(num_rounds=args.rounds), strategy=strategy,
                     client_resources={"num_cpus": 1, "num_gpus": 0.0},
                     ray_init_args={"address": "local", "num_cpus": args.workers,
                                    "include_dashboard": False, "log_to_driver": False})
    wall = time.perf_counter() - t0
    out = _summary([t1 - t0 for t0, t1, _ in marks], [iv for _, _, iv in marks], args.workers)
    out.update(wall_s=round(wall, 2), completed=int(len(marks) == args.rounds))
    return out


def child(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    what = args.child
    if what == "flower_ray":
        out = _flower(args)
    else:
        backend = "inprocess" if what == "tessera_inprocess" else "ray"
        out = _tessera(args, backend, secure=what == "tessera_ray_secagg")
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# ---- the parent: runs each system in a child and samples its memory ---------------------------


def _rss_mb(pid: int) -> tuple[float, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return 0.0, ""
    return rss / 1024.0, cmd


def run_child(part: str, args: argparse.Namespace, clients: int, fraction: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.simulation", "--child", part, "--clients", str(clients),
           "--fraction", str(fraction), "--rounds", str(args.rounds), "--workers", str(args.workers),
           "--round-timeout", str(args.round_timeout)]
    load0 = os.getloadavg()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"workers": 0.0, "tree": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            mine = tree = 0.0
            for pid in process_tree(p.pid):
                mb, name = _rss_mb(pid)
                tree += mb
                if pid == p.pid or name.startswith("ray::"):
                    mine += mb
            peak["workers"] = max(peak["workers"], mine)
            peak["tree"] = max(peak["tree"], tree)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = p.communicate(timeout=args.child_timeout)
    stop.set()
    th.join()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"{part} failed (exit {p.returncode})")
    res = json.loads(lines[-1][len("RESULT "):])
    res.update(peak_rss_mb=round(peak["workers"], 1), peak_tree_rss_mb=round(peak["tree"], 1),
               load_before=[round(x, 2) for x in load0],
               load_after=[round(x, 2) for x in os.getloadavg()])
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="main,10k,secagg",
                    help="comma list of: main (the three systems), 10k, secagg")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="client processes (Ray actors, 1 CPU each) / in-process threads")
    ap.add_argument("--round-timeout", type=float, default=1800.0)
    ap.add_argument("--child-timeout", type=float, default=5400.0)
    ap.add_argument("--systems", default="tessera_ray,tessera_inprocess,flower_ray")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        # run from the imported module, not __main__: Ray pickles __main__'s functions by value
        # (a fresh, empty MNIST cache with every Flower message), an importable module's by name
        from benchmarks import simulation

        return simulation.child(args)
    parts = set(args.parts.split(","))
    cond = {"model": MODEL, "params": 199_210, "partition": "pathological non-IID (2 shards)",
            "clients": args.clients, "C": args.fraction, "E": 1, "B": B, "rounds": args.rounds,
            "workers": args.workers, "cores": len(os.sched_getaffinity(0)),
            "median_of_rounds": "2.." if args.rounds > 1 else "1"}
    plain: dict[str, Any] | None = None
    if "main" in parts:
        res = {s: run_child(s, args, args.clients, args.fraction) for s in args.systems.split(",")}
        for s, r in res.items():
            extra = {k: r[k] for k in ("rounds_s", "overhead_per_round", "idle_capacity_pct",
                                       "clients_per_round", "wall_s", "load_before", "load_after")}
            emit(f"sim_round_s_{s}", round(r["round_s"], 3), "s", **cond, **extra)
            emit(f"sim_overhead_pct_{s}", round(r["overhead_pct"], 2), "%", **cond, **extra)
            emit(f"sim_peak_rss_mb_{s}", r["peak_rss_mb"], "MB", **cond,
                 peak_tree_rss_mb=r["peak_tree_rss_mb"], wall_s=r["wall_s"])
        plain = res.get("tessera_ray")
        if plain and "flower_ray" in res:
            f = res["flower_ray"]
            emit("sim_overhead_ray_over_flower", round(plain["overhead_pct"] / max(f["overhead_pct"], 1e-9), 3),
                 "ratio", target="<= 0.333", **cond)
            emit("sim_peak_rss_ray_over_flower", round(plain["peak_rss_mb"] / f["peak_rss_mb"], 3),
                 "ratio", target="<= 1", **cond)
    if "secagg" in parts:
        if plain is None:
            plain = run_child("tessera_ray", args, args.clients, args.fraction)
        r = run_child("tessera_ray_secagg", args, args.clients, args.fraction)
        extra = {"rounds_s": r["rounds_s"], "plain_rounds_s": plain["rounds_s"],
                 "secure_agg": r.get("secure_agg"), "load_before": r["load_before"],
                 "load_after": r["load_after"], "peak_rss_mb": r["peak_rss_mb"]}
        emit("sim_secagg_1k_round_s", round(r["round_s"], 3), "s", **cond, **extra)
        emit("sim_secagg_1k_over_plain", round(r["round_s"] / plain["round_s"], 3), "ratio",
             target="<= 2", **cond, plain_round_s=plain["round_s"], secagg_round_s=r["round_s"])
    if "10k" in parts:
        c10 = {**cond, "clients": 10_000, "C": 0.01}
        r = run_child("tessera_ray", args, 10_000, 0.01)
        extra = {"rounds_s": r["rounds_s"], "setup_s": r["setup_s"], "wall_s": r["wall_s"],
                 "fit_results": r["fit_results"], "peak_rss_mb": r["peak_rss_mb"],
                 "peak_tree_rss_mb": r["peak_tree_rss_mb"], "load_before": r["load_before"],
                 "load_after": r["load_after"]}
        emit("sim_10k_completed", r["completed"], "bool", **c10, **extra)
        emit("sim_10k_round_s", round(r["round_s"], 3), "s", **c10, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
