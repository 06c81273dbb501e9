"""Differential privacy on MNIST FedAvg: tessera central, tessera distributed, Flower central.

    python -m benchmarks.dp [--model cnn] [--clients 100] [--fraction 0.1] [--rounds 20] \\
        [--epsilons 1,3,8] [--seeds 3] [--clip 1.0] [--bits 16]

Side by side in one run, on the same model, data, clients, rounds and noise multiplier:

- ``tessera_central``: ``DifferentialPrivacyServerSideFixedClipping`` around FedAvg;
- ``tessera_distributed``: ``secure_agg={"dp": ...}`` (clip, rotate, round, discrete
  Gaussian noise on each client, SecAgg+ sums, the server decodes);
- ``flower_central``: Flower 1.42's own ``DifferentialPrivacyServerSideFixedClipping``
  around Flower's FedAvg, driven by Flower's ``Server.fit_round`` over in-process
  ``ClientProxy`` objects (the ``bench`` extra; no Ray).

For each target ε the noise multiplier ``z`` is the one that gives central DP ε at
``δ = 1e-5`` after ``--rounds`` rounds at sampling rate ``--fraction`` (RDP), and all
three arms use that ``z``. Each arm runs once per seed (``--seeds``); a seed fixes the
clients sampled in every round (the same for all arms: both FedAvgs follow one schedule)
and the central wrappers' noise generators; data, partition and each client's training
shuffle are the same everywhere. ``--noise-stream flower`` gives tessera's central wrapper
the very noise draws Flower's makes, so that the two central arms differ only by
implementation. Printed (one JSON line each):

- ``dp_accuracy_<arm>`` per seed (test accuracy after the last round), and
  ``dp_accuracy_<arm>_mean`` / ``_std`` over the seeds;
- ``dp_accuracy_central_gap``: tessera's mean minus Flower's, in accuracy points, with
  its standard error (``within_noise``: the gap is under two standard errors);
- ``dp_epsilon`` (per arm: central with amplification by sampling; distributed without
  it, for the fewest survivors the SecAgg threshold allows, because in distributed mode
  the untrusted server does the sampling);
- ``dp_distributed_round_over_secagg``: the median distributed-DP round over the median
  plain SecAgg+ round, same clients (seed 0's schedule); ``cpu_ratio`` in its conditions
  is the same for the process's CPU time per round (less sensitive to other jobs' load);
- ``dp_noise_*``: one round of both central wrappers on the same ten trained updates with
  fixed seeds: the noise each adds (its output minus its own noise-free output) against
  ``z·C/m``, and the two noise-free outputs against each other.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from benchmarks._emit import emit, interleaved
from benchmarks._mnist_clients import flower_proxies, iid_clients
from examples.mnist_fedavg.task import make_model, test
from hfl.torch_utils import get_parameters, set_parameters

DELTA = 1e-5
ARMS = ("tessera_central", "tessera_distributed", "flower_central")


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    client_fn, (xte, yte) = iid_clients(args.clients, model=args.model, epochs=args.epochs,
                                        batch_size=args.batch_size, lr=args.lr,
                                        limit_train=args.limit_train)
    model = make_model(args.model)

    def accuracy(params: list[np.ndarray]) -> float:
        set_parameters(model, params)
        return test(model, xte, yte)[1]

    return {"client_fn": client_fn, "accuracy": accuracy,
            "init": get_parameters(make_model(args.model))}


def _per_round(args: argparse.Namespace) -> int:
    return max(3, round(args.fraction * args.clients))


def _schedule(args: argparse.Namespace, seed: int) -> list[list[int]]:
    """The clients of each round for ``seed``: the same for every arm."""
    rng = np.random.default_rng([seed, 0xD9])
    m = _per_round(args)
    return [sorted(int(c) for c in rng.choice(args.clients, m, replace=False))
            for _ in range(args.rounds)]


def _scheduled(base: type, schedule: list[list[int]], key: Callable[[int], str]) -> type:
    """``base`` (a FedAvg) whose ``configure_fit`` asks the clients ``schedule`` names."""

    class Scheduled(base):  # type: ignore[misc, valid-type]
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            ins = super().configure_fit(server_round, parameters, client_manager)
            fit_ins = ins[0][1]  # the round's FitIns; the base's own sample is ignored
            pool = client_manager.all()
            return [(pool[key(i)], fit_ins) for i in schedule[server_round - 1]]

    return Scheduled


def _tessera(args: argparse.Namespace, s: dict[str, Any], z: float | None, *, mode: str,
             seed: int = 0) -> dict[str, Any]:
    import hfl
    import hfl.common.differential_privacy as hdp
    from hfl.server.strategy.dp_fixed_clipping import DifferentialPrivacyServerSideFixedClipping

    m = _per_round(args)
    final: dict[str, Any] = {}

    def evaluate_fn(rnd: int, params: list[Any], config: dict[str, Any]) -> Any:
        if rnd == args.rounds:
            final["acc"] = s["accuracy"](params)
        return None

    fedavg = _scheduled(hfl.server.strategy.FedAvg, _schedule(args, seed), lambda i: f"client_{i}")
    inner = fedavg(
        fraction_fit=m / args.clients, min_fit_clients=m, min_available_clients=args.clients,
        fraction_evaluate=0.0, evaluate_fn=evaluate_fn,
        initial_parameters=hfl.ndarrays_to_parameters(s["init"]),
        on_fit_config_fn=lambda r: {"server_round": r})
    secure: Any = False
    strategy: Any = inner
    if mode == "central":
        assert z is not None
        # the wrapper's noise, per seed; 'flower': the very draws Flower's wrapper makes
        # (numpy's legacy generator seeded as in _flower), an identity check of the two
        rng: Any = (np.random.RandomState(seed + 1000) if args.noise_stream == "flower"
                    else np.random.default_rng([seed, 1]))
        hdp._rng = rng
        strategy = DifferentialPrivacyServerSideFixedClipping(inner, z, args.clip, m)
    elif mode == "distributed":
        secure = {"mode": "secagg+", "dp": {"noise_multiplier": z, "clip": args.clip,
                                             "bits": args.bits, "delta": DELTA}}
    elif mode == "secagg":
        secure = {"mode": "secagg+"}
    t0, c0 = time.perf_counter(), time.process_time()
    h = hfl.simulate(s["client_fn"], args.clients, strategy=strategy, num_rounds=args.rounds,
                     secure_agg=secure, num_workers=args.workers, seed=seed)
    cpu_s = time.process_time() - c0  # all threads of this process: clients and server
    eps = h.metrics_distributed_fit.get("dp_epsilon", [(0, math.nan)])[-1][1]
    rounds = [r["time_s"] for r in h.rounds]
    aggs = [r.get("aggregate_s", 0.0) for r in h.rounds]
    return {"acc": final.get("acc", math.nan), "epsilon": eps, "wall_s": time.perf_counter() - t0,
            "round_s": float(statistics.median(rounds)), "round_mean_s": float(np.mean(rounds)),
            "aggregate_s": float(statistics.median(aggs)), "cpu_per_round_s": cpu_s / args.rounds,
            "rounds_s": rounds, "aggregates_s": aggs, "cpu_s": cpu_s}


def _timing(args: argparse.Namespace, s: dict[str, Any], z: float,
            first: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distributed-DP and plain SecAgg+ runs on seed 0's clients, ``--timing-repeats`` of
    each, interleaved (D S S D D S ...) so that a change in the machine's load falls on both
    arms alike; each arm's rounds are pooled. ``first``: a distributed run already made."""
    runs: dict[str, list[dict[str, Any]]] = {"distributed": [first] if first else [],
                                             "secagg": []}
    for mode in interleaved("distributed", "secagg", args.timing_repeats):
        if len(runs[mode]) < args.timing_repeats:  # ``first`` counts as one of them
            runs[mode].append(_tessera(args, s, z if mode == "distributed" else None,
                                       mode=mode, seed=0))

    def pooled(rs: list[dict[str, Any]]) -> dict[str, Any]:
        rounds = [t for r in rs for t in r["rounds_s"]]
        aggs = [t for r in rs for t in r["aggregates_s"]]
        return {"round_s": float(statistics.median(rounds)), "round_mean_s": float(np.mean(rounds)),
                "aggregate_s": float(statistics.median(aggs)),
                "cpu_per_round_s": sum(r["cpu_s"] for r in rs) / len(rounds), "rounds": len(rounds)}

    return pooled(runs["distributed"]), pooled(runs["secagg"])


def _flower(args: argparse.Namespace, s: dict[str, Any], z: float, *, seed: int = 0
            ) -> dict[str, Any]:
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import Server
    from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    m = _per_round(args)
    cm = flower_proxies(s["client_fn"], args.clients)
    fedavg = _scheduled(FedAvg, _schedule(args, seed), str)
    inner = fedavg(fraction_fit=m / args.clients, min_fit_clients=m,
                   min_available_clients=args.clients, fraction_evaluate=0.0,
                   on_fit_config_fn=lambda r: {"server_round": r})
    strategy = DifferentialPrivacyServerSideFixedClipping(inner, z, args.clip, m)
    server = Server(client_manager=cm, strategy=strategy)
    server.set_max_workers(args.workers or os.cpu_count() or 1)
    server.parameters = ndarrays_to_parameters(s["init"])
    np.random.seed(seed + 1000)  # Flower's noise comes from numpy's global generator
    t0 = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        res = server.fit_round(rnd, timeout=None)
        if res is not None and res[0] is not None:
            server.parameters = res[0]
    acc = s["accuracy"](parameters_to_ndarrays(server.parameters))
    return {"acc": acc, "wall_s": time.perf_counter() - t0}


def _noise_check(args: argparse.Namespace, s: dict[str, Any], z: float) -> dict[str, Any]:
    """One round of both central wrappers on the same trained updates, fixed seeds."""
    import flwr.common as fc
    from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping as FlowerDP
    from flwr.server.strategy import FedAvg as FlowerFedAvg
    from scipy import stats

    import hfl
    import hfl.common.differential_privacy as hdp
    from hfl.server.client_manager import SimpleClientManager
    from hfl.server.strategy.dp_fixed_clipping import DifferentialPrivacyServerSideFixedClipping

    m = _per_round(args)
    cids = _schedule(args, 0)[0]
    trained = [s["client_fn"](str(i)).fit(s["init"], {"server_round": 1}) for i in cids]
    flat = lambda arrays: np.concatenate([np.ravel(a).astype(np.float64) for a in arrays])  # noqa: E731
    norms = [float(np.linalg.norm(flat(p) - flat(s["init"]))) for p, _, _ in trained]

    proxy_base: Any = hfl.server.ClientProxy

    class _HflProxy(proxy_base):
        def get_properties(self, *a: Any) -> Any:
            raise NotImplementedError

        get_parameters = fit = evaluate = reconnect = get_properties

    def run_tessera(zz: float) -> np.ndarray:
        hdp._rng = np.random.default_rng([7, 1])
        cm = SimpleClientManager()
        proxies = [_HflProxy(str(i)) for i in range(args.clients)]
        for p in proxies:
            cm.register(p)
        st = DifferentialPrivacyServerSideFixedClipping(
            hfl.server.strategy.FedAvg(fraction_fit=m / args.clients, min_fit_clients=m,
                                       min_available_clients=args.clients), zz, args.clip, m)
        st.configure_fit(1, hfl.ndarrays_to_parameters(s["init"]), cm)
        res: list[Any] = [(proxies[i], hfl.common.FitRes(hfl.common.Status(hfl.common.Code.OK, ""),
                                              hfl.ndarrays_to_parameters(p), k, {}))
               for i, (p, k, _) in zip(cids, trained, strict=True)]
        out, _ = st.aggregate_fit(1, res, [])
        assert out is not None
        return flat(hfl.parameters_to_ndarrays(out))

    def run_flower(zz: float) -> np.ndarray:
        np.random.seed(7)
        cm = flower_proxies(s["client_fn"], args.clients)
        st = FlowerDP(FlowerFedAvg(fraction_fit=m / args.clients, min_fit_clients=m,
                                   min_available_clients=args.clients), zz, args.clip, m)
        st.configure_fit(1, fc.ndarrays_to_parameters(s["init"]), cm)
        pool = cm.all()
        res = [(pool[str(i)], fc.FitRes(fc.Status(fc.Code.OK, ""), fc.ndarrays_to_parameters(p),
                                         k, {}))
               for i, (p, k, _) in zip(cids, trained, strict=True)]
        out, _ = st.aggregate_fit(1, res, [])
        return flat(fc.parameters_to_ndarrays(out))

    clean_t, clean_f = run_tessera(0.0), run_flower(0.0)
    noise_t, noise_f = run_tessera(z) - clean_t, run_flower(z) - clean_f
    sub = np.random.default_rng(3).choice(noise_t.size, min(noise_t.size, 200_000), replace=False)
    ks = stats.ks_2samp(noise_t[sub], noise_f[sub])
    return {"target": z * args.clip / m, "std_t": float(noise_t.std()), "std_f": float(noise_f.std()),
            "mean_t": float(noise_t.mean()), "mean_f": float(noise_f.mean()),
            "ks_p": float(ks.pvalue), "clean_max_diff": float(np.abs(clean_t - clean_f).max()),
            "update_norms": [round(v, 3) for v in norms], "n": int(noise_t.size),
            "clients": cids}


def _summary(values: list[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    return mean, float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


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
    ap.add_argument("--seeds", type=int, default=3, help="runs per arm and epsilon (>= 1)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--no-flower", action="store_true")
    ap.add_argument("--timing-repeats", type=int, default=1,
                    help="runs per arm for dp_distributed_round_over_secagg (interleaved)")
    ap.add_argument("--timing-only", action="store_true",
                    help="only dp_distributed_round_over_secagg (no central, Flower or seeds)")
    ap.add_argument("--noise-stream", choices=["own", "flower"], default="own",
                    help="tessera central's noise draws: its own seeded generator, or the same "
                         "draws as Flower's arm (then the two arms differ only by implementation)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.timing_repeats < 1:
        ap.error("--seeds and --timing-repeats must be >= 1")
    if args.timing_only:
        args.no_flower, args.seeds = True, 1
    torch.set_num_threads(1)
    s = _setup(args)
    q = _per_round(args) / args.clients
    cond = {"model": args.model, "clients": args.clients, "fraction": args.fraction,
            "rounds": args.rounds, "epochs": args.epochs, "batch_size": args.batch_size,
            "clip": args.clip, "delta": DELTA, "bits": args.bits, "seeds": args.seeds,
            "noise_stream": args.noise_stream}
    epsilons = [float(e) for e in args.epsilons.split(",")]
    if not args.no_flower:
        z0 = central_noise_for(epsilons[0], DELTA, args.rounds, q)
        nc = _noise_check(args, s, z0)
        c0 = {**cond, "noise_multiplier": round(z0, 4), "target_std": nc["target"],
              "values": nc["n"], "clients_of_round": nc["clients"],
              "update_norms": nc["update_norms"], "load_avg_1m": round(os.getloadavg()[0], 2)}
        emit("dp_noise_std_tessera_central", nc["std_t"], "std", **c0, mean=nc["mean_t"])
        emit("dp_noise_std_flower_central", nc["std_f"], "std", **c0, mean=nc["mean_f"])
        emit("dp_noise_std_tessera_over_flower", round(nc["std_t"] / nc["std_f"], 5), "x", **c0,
             ks_2samp_pvalue=nc["ks_p"])
        emit("dp_noise_free_aggregate_max_abs_diff", nc["clean_max_diff"], "abs", **c0,
             note="both wrappers at noise_multiplier 0 on the same results")
    secagg = None
    for eps_target in epsilons:
        z = central_noise_for(eps_target, DELTA, args.rounds, q)
        c = {**cond, "target_epsilon": eps_target, "noise_multiplier": round(z, 4)}
        accs: dict[str, list[float]] = {a: [] for a in ARMS}
        dis0: dict[str, Any] = {}
        for seed in range(args.seeds):
            cs = {**c, "seed": seed, "load_avg_1m": round(os.getloadavg()[0], 2)}
            if args.timing_only:
                break
            cen = _tessera(args, s, z, mode="central", seed=seed)
            dis = _tessera(args, s, z, mode="distributed", seed=seed)
            dis0 = dis0 or dis
            accs["tessera_central"].append(cen["acc"])
            accs["tessera_distributed"].append(dis["acc"])
            emit("dp_accuracy_tessera_central", round(cen["acc"], 4), "accuracy", **cs)
            emit("dp_accuracy_tessera_distributed", round(dis["acc"], 4), "accuracy", **cs)
            if seed == 0:
                emit("dp_epsilon", round(cen["epsilon"], 3), "epsilon", **cs,
                     arm="tessera_central", accounting="RDP, Poisson sampling at q")
                emit("dp_epsilon", round(dis["epsilon"], 3), "epsilon", **cs,
                     arm="tessera_distributed",
                     accounting="zCDP of the discrete-Gaussian sum at the SecAgg threshold, "
                                "no amplification by sampling (the server samples)")
            if not args.no_flower:
                fl = _flower(args, s, z, seed=seed)
                accs["flower_central"].append(fl["acc"])
                emit("dp_accuracy_flower_central", round(fl["acc"], 4), "accuracy", **cs,
                     reference="flwr 1.42 DifferentialPrivacyServerSideFixedClipping(FedAvg), "
                               "Server.fit_round, in-process ClientProxy")
        cl = {**c, "load_avg_1m": round(os.getloadavg()[0], 2)}
        for arm, vals in accs.items():
            if vals:
                mean, std = _summary(vals)
                emit(f"dp_accuracy_{arm}_mean", round(mean, 4), "accuracy", **cl,
                     runs=[round(v, 4) for v in vals])
                emit(f"dp_accuracy_{arm}_std", round(std, 4), "accuracy", **cl)
        if accs["flower_central"]:
            (mt, st), (mf, sf) = _summary(accs["tessera_central"]), _summary(accs["flower_central"])
            se = math.sqrt((st**2 + sf**2) / args.seeds) if args.seeds > 1 else math.nan
            emit("dp_accuracy_central_gap", round(100 * (mt - mf), 2), "accuracy points", **cl,
                 standard_error_points=round(100 * se, 2),
                 within_noise=bool(args.seeds > 1 and abs(mt - mf) < 2 * se),
                 note="tessera_central mean minus flower_central mean")
        if accs["tessera_distributed"]:
            md, _ = _summary(accs["tessera_distributed"])
            emit("dp_accuracy_distributed_minus_central", round(100 * (md - _summary(
                accs["tessera_central"])[0]), 2), "accuracy points", **cl)
        statistic = "median round time, seed 0's clients, against the first ε's SecAgg+ runs"
        if secagg is None:
            dis0, secagg = _timing(args, s, z, dis0)
            statistic = (f"median round time, seed 0's clients, {args.timing_repeats} interleaved "
                         "run(s) per arm, rounds pooled")
        emit("dp_distributed_round_over_secagg", round(dis0["round_s"] / secagg["round_s"], 3),
             "x", **cl, statistic=statistic,
             rounds_per_arm=secagg["rounds"],
             mean_ratio=round(dis0["round_mean_s"] / secagg["round_mean_s"], 3),
             distributed_round_s=round(dis0["round_s"], 3),
             secagg_round_s=round(secagg["round_s"], 3),
             distributed_round_mean_s=round(dis0["round_mean_s"], 3),
             secagg_round_mean_s=round(secagg["round_mean_s"], 3),
             distributed_aggregate_s=round(dis0["aggregate_s"], 3),
             secagg_aggregate_s=round(secagg["aggregate_s"], 3),
             cpu_ratio=round(dis0["cpu_per_round_s"] / secagg["cpu_per_round_s"], 3),
             distributed_cpu_per_round_s=round(dis0["cpu_per_round_s"], 3),
             secagg_cpu_per_round_s=round(secagg["cpu_per_round_s"], 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
