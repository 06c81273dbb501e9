"""FedAvg on MNIST in simulation: McMahan et al. (2017) Table 2 settings, and simulation overhead.

    # rounds to 99 % test accuracy (paper: CNN, 100 clients, C=0.1, E=5, B=10: IID 20, non-IID 229)
    python -m benchmarks.fedavg_mnist --mode accuracy --partition iid --max-rounds 50
    python -m benchmarks.fedavg_mnist --mode accuracy --partition non-iid --max-rounds 400 \
        --checkpoint-dir runs/fedavg   # hours on 2 cores: rerun the same command to resume
    # quick scale-down
    python -m benchmarks.fedavg_mnist --mode accuracy --clients 20 --max-rounds 3 --limit-train 12000
    # overhead per round (time not spent in client training), tessera plain / SecAgg+ / Flower 1.42
    python -m benchmarks.fedavg_mnist --mode overhead --clients 100 --rounds 3

Every figure is one JSON line (figure, value, unit, conditions). Overhead of a
round = (fit phase + aggregation − time during which some client was training)
/ (fit phase + aggregation); central evaluation is excluded. The Flower reference
drives flwr 1.42's own ``Server.fit_round`` (sampling, thread pool, its NumPy
serialisation, FedAvg) over in-process client proxies calling the same client
code; a second Flower figure runs its real Ray simulation (``start_simulation``,
``pip install "flwr[simulation]==1.42.0"``, the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmarks._emit import emit
from benchmarks._mnist_clients import (
    flower_proxies,
    iid_clients,
    timed_fit,
    timed_flower_fedavg,
    union_s,
)
from examples.mnist_fedavg import run as mnist_run
from examples.mnist_fedavg.task import MnistClient, make_model
from hfl.torch_utils import get_parameters


def overhead_summary(rounds: Sequence[tuple[float, float, list[tuple[float, float]]]]
                     ) -> tuple[float, list[float]]:
    """Per round (start, end, client training intervals): the fraction of the round during
    which no client trained; returns (mean over rounds 2.. (round 1 warms up), all)."""
    fractions = []
    for t0, t1, intervals in rounds:
        busy = union_s(intervals, t0, t1)
        fractions.append(max(0.0, (t1 - t0 - busy) / (t1 - t0)))
    return float(np.mean(fractions[1:] if len(fractions) > 1 else fractions)), fractions


def accuracy_run(args: argparse.Namespace, non_iid: bool) -> None:
    ns = mnist_run.parser().parse_args([
        "--model", "cnn", "--clients", str(args.clients), "--fraction", str(args.fraction),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
        "--rounds", str(args.max_rounds), "--target", str(args.target), "--stop-at-target",
        *(["--non-iid"] if non_iid else []),
        *(["--limit-train", str(args.limit_train)] if args.limit_train else []),
        *(["--workers", str(args.workers)] if args.workers else []),
        *(["--checkpoint-dir", f"{args.checkpoint_dir}/{'non-iid' if non_iid else 'iid'}"]
          if args.checkpoint_dir else []),
    ])
    out = mnist_run.run(ns)
    cond = {k: out[k] for k in ("model", "params", "partition", "clients", "C", "E", "B", "lr")}
    cond.update(max_rounds=args.max_rounds, limit_train=args.limit_train, target=args.target,
                paper_rounds=229 if non_iid else 20, cores=_cores())
    emit("fedavg_mnist_rounds_to_target", out["rounds_to_target"], "rounds", **cond)
    emit("fedavg_mnist_final_accuracy", out["final_accuracy"], "fraction", rounds=out["rounds_run"], **cond)
    emit("fedavg_mnist_wall_time", out["wall_s"], "s", rounds=out["rounds_run"], **cond)
    emit("fedavg_mnist_rounds_time", out["rounds_s"], "s", rounds=out["rounds_run"],
         note="sum of round times over all invocations (resumes included)", **cond)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _clients(args: argparse.Namespace, timings: list[tuple[float, float]] | None) -> Any:
    client_fn, _ = iid_clients(args.clients, model="cnn", epochs=args.epochs,
                               batch_size=args.batch_size, lr=args.lr,
                               limit_train=args.limit_train, timings=timings)
    return client_fn


def overhead_tessera(args: argparse.Namespace, secure: bool) -> tuple[float, list[float]]:
    import hfl
    from hfl.messages import FitIns

    timings: list[tuple[float, float]] = []
    client_fn = _clients(args, timings)
    strategy = hfl.FedAvg(fraction_fit=args.fraction, min_fit_clients=1,
                          min_available_clients=args.clients, fraction_evaluate=0.0,
                          initial_parameters=get_parameters(make_model("cnn")),
                          on_fit_config_fn=lambda r: {"server_round": r})
    marks: list[tuple[float, float]] = []

    class Timed(hfl.Server):
        def ask(self, instructions: Any, timeout_s: float, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = super().ask(instructions, timeout_s, **kw)
            if instructions and isinstance(instructions[0][1], FitIns):
                marks.append((t0, time.perf_counter() - t0))
            return out

        def run_round(self, rnd: int, params: Any, timeout_s: float) -> Any:
            out = super().run_round(rnd, params, timeout_s)
            t0, fit = marks[-1]
            marks[-1] = (t0, fit + self.history.rounds[-1]["aggregate_s"])
            return out

    import hfl.simulation as sim

    orig = sim.Server
    sim.Server = Timed  # type: ignore[misc]
    try:
        hfl.simulate(client_fn, args.clients, num_rounds=args.rounds, strategy=strategy,
                     num_workers=args.workers, secure_agg={"clip": 8.0} if secure else False)
    finally:
        sim.Server = orig  # type: ignore[misc]
    return overhead_summary([(t0, t0 + phase, timings) for t0, phase in marks])


def overhead_flower(args: argparse.Namespace) -> tuple[float, list[float]]:
    """flwr 1.42 Server.fit_round over in-process ClientProxy objects (no Ray)."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server import Server
    from flwr.server.strategy import FedAvg

    timings: list[tuple[float, float]] = []
    cm = flower_proxies(_clients(args, timings), args.clients)
    strategy = FedAvg(fraction_fit=args.fraction, min_fit_clients=1, min_available_clients=args.clients,
                      fraction_evaluate=0.0,
                      on_fit_config_fn=lambda r: {"server_round": r})
    server = Server(client_manager=cm, strategy=strategy)
    server.set_max_workers(args.workers or _cores())
    server.parameters = ndarrays_to_parameters(get_parameters(make_model("cnn")))
    rounds = []
    for rnd in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        res = server.fit_round(rnd, timeout=None)
        assert res is not None and res[0] is not None
        server.parameters = res[0]
        rounds.append((t0, time.perf_counter(), timings))
    return overhead_summary(rounds)


def overhead_flower_ray(args: argparse.Namespace) -> tuple[float, list[float]]:
    """flwr 1.42's Ray simulation (``flwr.simulation.start_simulation``, one actor per core).

    Each client records when it trained (``time.perf_counter`` is CLOCK_MONOTONIC, shared by
    the actor processes) and returns it in its metrics; a round runs from the strategy's
    ``configure_fit`` to the end of its ``aggregate_fit``.
    """
    import flwr
    from flwr.simulation import start_simulation

    class Timed(flwr.client.NumPyClient):  # the same client code, behind Flower's own NumPyClient
        def __init__(self, inner: MnistClient) -> None:
            self.inner = inner

        def get_parameters(self, config: dict[str, Any]) -> Any:
            return self.inner.get_parameters(config)

        def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
            return timed_fit(self.inner.fit, parameters, config)

    make = _clients(args, [])

    def client_fn(cid: str) -> Any:
        torch.set_num_threads(1)
        return Timed(make(cid)).to_client()

    strategy, marks = timed_flower_fedavg(
        fail_on_failures=True, fraction_fit=args.fraction, min_fit_clients=1,
        min_available_clients=args.clients, fraction_evaluate=0.0,
        initial_parameters=flwr.common.ndarrays_to_parameters(get_parameters(make_model("cnn"))),
        on_fit_config_fn=lambda r: {"server_round": r})
    start_simulation(client_fn=client_fn, num_clients=args.clients,
                     config=flwr.server.ServerConfig(num_rounds=args.rounds), strategy=strategy,
                     client_resources={"num_cpus": 1, "num_gpus": 0.0},
                     ray_init_args={"num_cpus": args.workers or _cores(), "include_dashboard": False,
                                    "log_to_driver": False})
    return overhead_summary(marks)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["accuracy", "overhead", "all"], default="accuracy")
    ap.add_argument("--partition", choices=["iid", "non-iid", "both"], default="iid")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.15,
                    help="client SGD learning rate (0.15 reaches 99%% IID in 20 rounds here; 0.05 did not in 30)")
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--max-rounds", type=int, default=50, help="accuracy mode: stop here at the latest")
    ap.add_argument("--rounds", type=int, default=3, help="overhead mode: rounds measured")
    ap.add_argument("--limit-train", type=int, default=None, help="first N training images only")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-flower", action="store_true")
    ap.add_argument("--checkpoint-dir", default=None,
                    help="accuracy mode: checkpoint each round under DIR/<partition>; the same "
                         "command resumes there (wall time then counts this invocation only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.mode in ("accuracy", "all"):
        for p in (["iid", "non-iid"] if args.partition == "both" else [args.partition]):
            accuracy_run(args, non_iid=p == "non-iid")
    if args.mode in ("overhead", "all"):
        cond = {"clients": args.clients, "C": args.fraction, "E": args.epochs, "B": args.batch_size,
                "rounds": args.rounds, "workers": args.workers or _cores(), "cores": _cores(),
                "limit_train": args.limit_train, "model": "cnn", "params": 1_663_370,
                "first_round_excluded": args.rounds > 1}
        v, per = overhead_tessera(args, secure=False)
        emit("hfl_sim_overhead", round(100 * v, 2), "%", secure_agg=False, per_round=per, **cond)
        v, per = overhead_tessera(args, secure=True)
        emit("hfl_sim_overhead", round(100 * v, 2), "%", secure_agg=True, per_round=per, **cond)
        if not args.no_flower:
            v, per = overhead_flower(args)
            emit("flwr_1_42_fit_round_overhead", round(100 * v, 2), "%", per_round=per,
                 reference="flwr.server.Server.fit_round, in-process ClientProxy, no Ray", **cond)
            v, per = overhead_flower_ray(args)
            emit("flwr_1_42_ray_simulation_overhead", round(100 * v, 2), "%", per_round=per,
                 reference="flwr.simulation.start_simulation (Ray 2.55.1), 1 CPU per actor", **cond)
    return 0


if __name__ == "__main__":
    sys.exit(main())
