"""Differential privacy on MNIST FedAvg: tessera central, tessera distributed, Flower central.

    python -m benchmarks.dp [--model cnn] [--clients 100] [--fraction 0.1] [--rounds 20] \\
        [--epsilons 1,3,8] [--clip 1.0] [--bits 16]

Side by side in one run, on the same model, data, clients, rounds and noise multiplier:

- ``tessera_central``: ``DifferentialPrivacyServerSideFixedClipping`` around FedAvg;
- ``tessera_distributed``: ``secure_agg={"dp": ...}`` (clip, rotate, round, discrete
  Gaussian noise on each client, SecAgg+ sums, the server decodes);
- ``flower_central``: Flower 1.42's own ``DifferentialPrivacyServerSideFixedClipping``
  around Flower's FedAvg, driven by Flower's ``Server.fit_round`` over in-process
  ``ClientProxy`` objects (the ``bench`` extra; no Ray).

For each target ε the noise multiplier ``z`` is the one that gives central DP ε at
``δ = 1e-5`` after ``--rounds`` rounds at sampling rate ``--fraction`` (RDP), and all
three arms use that ``z``. Printed (one JSON line each): ``dp_accuracy_<arm>`` (test
accuracy after the last round), ``dp_epsilon`` (per arm: central with amplification by
sampling; distributed without it, for the fewest survivors the SecAgg threshold allows,
because in distributed mode the untrusted server does the sampling), and
``dp_distributed_round_over_secagg`` (a distributed-DP round's time over a plain SecAgg+
round's, same clients).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmarks._emit import emit
from examples.mnist_fedavg.task import MnistClient, load, make_model, partition, test
from hfl.torch_utils import get_parameters, set_parameters

DELTA = 1e-5


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    xtr, ytr, xte, yte = load()
    if args.limit_train:
        xtr, ytr = xtr[: args.limit_train], ytr[: args.limit_train]
    parts = partition(ytr, args.clients, non_iid=False, seed=0)

    def client_fn(cid: str) -> MnistClient:
        idx = torch.from_numpy(parts[int(cid)])
        return MnistClient(int(cid), xtr[idx], ytr[idx], model=args.model, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr)

    model = make_model(args.model)

    def accuracy(params: list[np.ndarray]) -> float:
        set_parameters(model, params)
        return test(model, xte, yte)[1]

    return {"client_fn": client_fn, "accuracy": accuracy,
            "init": get_parameters(make_model(args.model))}


def _tessera(args: argparse.Namespace, s: dict[str, Any], z: float | None, *,
             mode: str) -> dict[str, Any]:
    import hfl
    from hfl.server.strategy.dp_fixed_clipping import DifferentialPrivacyServerSideFixedClipping

    m = max(3, round(args.fraction * args.clients))
    final: dict[str, Any] = {}

    def evaluate_fn(rnd: int, params: list[Any], config: dict[str, Any]) -> Any:
        if rnd == args.rounds:
            final["acc"] = s["accuracy"](params)
        return None

    inner = hfl.server.strategy.FedAvg(
        fraction_fit=m / args.clients, min_fit_clients=m, min_available_clients=args.clients,
        fraction_evaluate=0.0, evaluate_fn=evaluate_fn,
        initial_parameters=hfl.ndarrays_to_parameters(s["init"]),
        on_fit_config_fn=lambda r: {"server_round": r})
    secure: Any = False
    strategy: Any = inner
    if mode == "central":
        assert z is not None
        strategy = DifferentialPrivacyServerSideFixedClipping(inner, z, args.clip, m)
    elif mode == "distributed":
        secure = {"mode": "secagg+", "dp": {"noise_multiplier": z, "clip": args.clip,
                                             "bits": args.bits, "delta": DELTA}}
    elif mode == "secagg":
        secure = {"mode": "secagg+"}
    t0 = time.perf_counter()
    h = hfl.simulate(s["client_fn"], args.clients, strategy=strategy, num_rounds=args.rounds,
                     secure_agg=secure, num_workers=args.workers)
    eps = h.metrics_distributed_fit.get("dp_epsilon", [(0, math.nan)])[-1][1]
    rounds = [r["time_s"] for r in h.rounds]
    aggs = [r.get("aggregate_s", 0.0) for r in h.rounds]
    return {"acc": final.get("acc", math.nan), "epsilon": eps, "wall_s": time.perf_counter() - t0,
            "round_s": float(np.mean(rounds)), "aggregate_s": float(np.mean(aggs))}


def _flower(args: argparse.Namespace, s: dict[str, Any], z: float) -> dict[str, Any]:
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import Server, SimpleClientManager
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    client_fn = s["client_fn"]

    class Proxy(ClientProxy):
        def fit(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            params, n, metrics = client_fn(self.cid).fit(parameters_to_ndarrays(ins.parameters),
                                                         dict(ins.config))
            return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(params), n, metrics)

        def get_properties(self, *a: Any) -> Any:
            raise NotImplementedError

        get_parameters = evaluate = reconnect = get_properties

    m = max(3, round(args.fraction * args.clients))
    cm = SimpleClientManager()
    for i in range(args.clients):
        cm.register(Proxy(str(i)))
    inner = FedAvg(fraction_fit=m / args.clients, min_fit_clients=m,
                   min_available_clients=args.clients, fraction_evaluate=0.0,
                   on_fit_config_fn=lambda r: {"server_round": r})
    strategy = DifferentialPrivacyServerSideFixedClipping(inner, z, args.clip, m)
    server = Server(client_manager=cm, strategy=strategy)
    server.set_max_workers(args.workers or os.cpu_count() or 1)
    server.parameters = ndarrays_to_parameters(s["init"])
    t0 = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        res = server.fit_round(rnd, timeout=None)
        if res is not None and res[0] is not None:
            server.parameters = res[0]
    acc = s["accuracy"](parameters_to_ndarrays(server.parameters))
    return {"acc": acc, "wall_s": time.perf_counter() - t0}


def main(argv: Sequence[str] | None = None) -> int:
    from dp.accounting import central_noise_for

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["cnn", "2nn"], default="cnn")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.1, help="C: fraction of clients per round")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0, help="L2 clipping norm of an update")
    ap.add_argument("--bits", type=int, default=16, help="distributed DP modulus 2**bits")
    ap.add_argument("--epsilons", default="1,3,8")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--no-flower", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    s = _setup(args)
    q = max(3, round(args.fraction * args.clients)) / args.clients
    cond = {"model": args.model, "clients": args.clients, "fraction": args.fraction,
            "rounds": args.rounds, "epochs": args.epochs, "batch_size": args.batch_size,
            "clip": args.clip, "delta": DELTA, "bits": args.bits,
            "load_avg_1m": round(os.getloadavg()[0], 2)}
    secagg = None
    for eps_target in (float(e) for e in args.epsilons.split(",")):
        z = central_noise_for(eps_target, DELTA, args.rounds, q)
        c = {**cond, "target_epsilon": eps_target, "noise_multiplier": round(z, 4)}
        cen = _tessera(args, s, z, mode="central")
        dis = _tessera(args, s, z, mode="distributed")
        emit("dp_accuracy_tessera_central", round(cen["acc"], 4), "accuracy", **c)
        emit("dp_accuracy_tessera_distributed", round(dis["acc"], 4), "accuracy", **c)
        emit("dp_epsilon", round(cen["epsilon"], 3), "epsilon", **c, arm="tessera_central",
             accounting="RDP, Poisson sampling at q")
        emit("dp_epsilon", round(dis["epsilon"], 3), "epsilon", **c, arm="tessera_distributed",
             accounting="zCDP of the discrete-Gaussian sum at the SecAgg threshold, no "
                        "amplification by sampling (the server samples)")
        if not args.no_flower:
            fl = _flower(args, s, z)
            emit("dp_accuracy_flower_central", round(fl["acc"], 4), "accuracy", **c,
                 reference="flwr 1.42 DifferentialPrivacyServerSideFixedClipping(FedAvg), "
                           "Server.fit_round, in-process ClientProxy")
        if secagg is None:
            secagg = _tessera(args, s, None, mode="secagg")
        emit("dp_distributed_round_over_secagg", round(dis["round_s"] / secagg["round_s"], 3), "x",
             **c, distributed_round_s=round(dis["round_s"], 3),
             secagg_round_s=round(secagg["round_s"], 3),
             distributed_aggregate_s=round(dis["aggregate_s"], 3),
             secagg_aggregate_s=round(secagg["aggregate_s"], 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
