"""Federated fine-tuning of all-MiniLM-L6-v2 on IMDB: accuracy, round overhead, plain and SecAgg+.

    python -m benchmarks.huggingface --rounds 2 --reviews-per-client 1500 --max-length 128
    python -m benchmarks.huggingface --smoke            # seconds: 3 x 16 reviews, 32 tokens

Three clients, each with its own share of the IMDB train rows (the pool left after
the held-out set is split off, no text on both sides: examples/huggingface/task.py),
FedAvg, local training as in Flower's HuggingFace quick start (one epoch of AdamW on
``outputs.loss``), accuracy on ``--test-size`` held-out reviews after each round.
The clients run concurrently in ``hfl.simulate`` (one thread each, in-memory
transport carrying the codec-encoded 22.7M-parameter updates).

Figures (one JSON line each):

- ``hf_accuracy_final``: held-out accuracy after the last plain round (target >= 0.85);
- ``hf_round_overhead_pct``: (round time - slowest client's local training time) /
  slowest client's local training time, mean over rounds, where round time is the
  server's fit phase plus aggregation (send the model, train, collect, FedAvg;
  the central evaluation is left out) and local training is the time inside
  ``train()`` measured by each client (target <= 5 %);
- ``hf_update_mb``: one client's update in the clear (its state_dict, float32);
- ``hf_secagg_round_overhead_pct``: the same with ``secure_agg=True`` (the update goes
  through SecAgg+ as a masked 64-bit vector; target <= 15 %), and the accuracy that
  run reached (``hf_secagg_accuracy_final``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmarks._emit import emit


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--secagg-rounds", type=int, default=None, help="default: --rounds")
    ap.add_argument("--reviews-per-client", type=int, default=1500)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per client")
    ap.add_argument("--eval-threads", type=int, default=2, help="torch threads for central evaluation")
    ap.add_argument("--skip", choices=["plain", "secagg"], default=None)
    ap.add_argument("--smoke", action="store_true", help="3 x 16 reviews, 32 tokens, 1 round, 64 test")
    return ap


def run_once(args: argparse.Namespace, *, secure: bool, rounds: int) -> dict[str, Any]:
    import hfl
    from examples.huggingface.client_app import IMDBClient, model_for
    from examples.huggingface.task import (
        DataConfig,
        get_model,
        get_params,
        imdb_split,
        load_data,
        set_params,
        test,
        test_loader,
    )

    cfg = DataConfig(max_length=args.max_length, batch_size=args.batch_size,
                     test_size=args.test_size, limit=args.reviews_per_client)
    _, held_out = imdb_split(args.test_size)
    central = test_loader(held_out, args.max_length)
    device = torch.device("cpu")
    eval_net = get_model()
    init = get_params(eval_net)
    timings: dict[int, list[float]] = {}
    lock = threading.Lock()
    t_start = time.perf_counter()
    label = "secagg" if secure else "plain"

    class TimedClient(IMDBClient):
        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            out = super().fit(parameters, config)
            with lock:
                timings.setdefault(int(config["server_round"]), []).append(float(out[2]["train_s"]))
            return out

    def client_fn(cid: str) -> Any:
        tr, te = load_data(int(cid), args.clients, cfg)
        return TimedClient(tr, te, lr=args.lr, net=model_for(int(cid)))

    def evaluate_fn(rnd: int, params: list[Any], config: dict[str, Any]) -> Any:
        if rnd == 0:
            return None  # round 0 (the untrained head) is not measured: it costs an evaluation
        torch.set_num_threads(args.eval_threads)  # no client trains during central evaluation
        try:
            set_params(eval_net, params)
            loss, acc = test(eval_net, central, device)
        finally:
            torch.set_num_threads(args.threads)
        print(f"[{label}] round {rnd}: held-out accuracy {acc:.4f} loss {loss:.4f} "
              f"({time.perf_counter() - t_start:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
        return loss, {"accuracy": acc}

    strategy = hfl.FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=args.clients,
                          min_available_clients=args.clients, evaluate_fn=evaluate_fn,
                          initial_parameters=init, on_fit_config_fn=lambda r: {"server_round": r})
    torch.set_num_threads(args.threads)
    history = hfl.simulate(client_fn, args.clients, num_rounds=rounds, strategy=strategy,
                           num_workers=args.clients, secure_agg=secure)
    wall = time.perf_counter() - t_start
    per_round = []
    for rec in history.rounds:
        r = int(rec["round"])
        slowest = max(timings.get(r, [float("nan")]))
        round_s = float(rec["fit_s"]) + float(rec["aggregate_s"])
        per_round.append({"round": r, "round_s": round(round_s, 2), "slowest_train_s": round(slowest, 2),
                          "overhead_pct": round(100.0 * (round_s - slowest) / slowest, 2),
                          "secure_agg": rec.get("secure_agg")})
    acc = history.metrics_centralized.get("accuracy", [])
    changed = sum(not np.array_equal(a, b) for a, b in zip(init, history.parameters or [], strict=False))
    return {"history": history, "per_round": per_round, "accuracy": [(r, round(a, 4)) for r, a in acc],
            "wall_s": round(wall, 1), "changed_arrays": changed,
            "update_mb": sum(a.nbytes for a in init) / 1e6,
            "num_params": sum(int(a.size) for a in init)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.smoke:
        args.reviews_per_client, args.max_length, args.rounds, args.test_size = 16, 32, 1, 64
    sa_rounds = args.secagg_rounds or args.rounds
    common = {"clients": args.clients, "reviews_per_client": args.reviews_per_client,
              "max_length": args.max_length, "batch_size": args.batch_size, "lr": args.lr,
              "test_size": args.test_size, "model": "all-MiniLM-L6-v2 (22.7M params)",
              "threads_per_client": args.threads, "cpus": os.cpu_count()}
    if args.skip != "plain":
        plain = run_once(args, secure=False, rounds=args.rounds)
        acc = plain["accuracy"]
        emit("hf_accuracy_final", acc[-1][1] if acc else float("nan"), "accuracy", **common,
             rounds=args.rounds, accuracy_per_round=acc, wall_s=plain["wall_s"], target=0.85,
             met=bool(acc and acc[-1][1] >= 0.85), loadavg=os.getloadavg())
        ov = [r["overhead_pct"] for r in plain["per_round"]]
        emit("hf_round_overhead_pct", round(sum(ov) / len(ov), 2), "%", **common, rounds=args.rounds,
             per_round=plain["per_round"], target=5.0, met=max(ov) <= 5.0, loadavg=os.getloadavg())
        emit("hf_update_mb", round(plain["update_mb"], 2), "MB", num_params=plain["num_params"],
             dtype="float32", secagg_masked_vector_mb=round(plain["num_params"] * 8 / 1e6, 2))
    if args.skip != "secagg":
        sa = run_once(args, secure=True, rounds=sa_rounds)
        ov = [r["overhead_pct"] for r in sa["per_round"]]
        emit("hf_secagg_round_overhead_pct", round(sum(ov) / len(ov), 2), "%", **common,
             rounds=sa_rounds, per_round=sa["per_round"], target=15.0, met=max(ov) <= 15.0,
             loadavg=os.getloadavg())
        acc = sa["accuracy"]
        emit("hf_secagg_accuracy_final", acc[-1][1] if acc else float("nan"), "accuracy", **common,
             rounds=sa_rounds, accuracy_per_round=acc, wall_s=sa["wall_s"], loadavg=os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
