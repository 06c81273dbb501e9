"""Flower's HuggingFace quick start under hfl: federated fine-tuning of a small BERT on IMDB, offline.

    python -m examples.huggingface.run --smoke                 # 3 clients x 16 reviews, 32 tokens: ~1 min
    python -m examples.huggingface.run --smoke --secure-agg    # the same through SecAgg+
    python -m examples.huggingface.run --clients 3 --rounds 2 --reviews-per-client 800 --max-length 128

Each client gets its own share of the IMDB train reviews and of the held-out reviews
(client_app.py / task.py); the server runs FedAvg and averages the clients' held-out
accuracy, weighted by examples, as Flower's quick start does. ``--secure-agg`` sends
each client's 22.7M-parameter update through secure aggregation (SecAgg+: the server
learns only the sum). Nothing touches the network (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch

import hfl as fl  # Flower: import flwr as fl
from examples.huggingface.client_app import DEFAULTS, client_fn
from examples.huggingface.task import get_model, get_params


def weighted_average(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    total = sum(n for n, _ in metrics)
    return {"accuracy": sum(n * float(m["accuracy"]) for n, m in metrics) / max(total, 1)}


def run(*, clients: int = 3, rounds: int = 1, run_config: dict[str, Any] | None = None,
        secure_agg: bool = False, workers: int | None = None) -> Any:
    """Run the quick start in simulation; returns the History (``.parameters``: the final model)."""
    rc = {**DEFAULTS, **(run_config or {})}

    def make_client(cid: str) -> Any:
        ctx = SimpleNamespace(node_id=int(cid), run_config=rc,
                              node_config={"partition-id": int(cid), "num-partitions": clients})
        return client_fn(ctx)

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=clients,
        min_available_clients=clients, evaluate_metrics_aggregation_fn=weighted_average,
        initial_parameters=get_params(get_model(seed=int(rc["seed"]))),
        on_fit_config_fn=lambda r: {"server_round": r})
    return fl.simulation.start_simulation(
        client_fn=make_client, num_clients=clients, config=fl.server.ServerConfig(num_rounds=rounds),
        strategy=strategy, secure_agg=secure_agg, num_workers=workers)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--reviews-per-client", type=int, default=800)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--test-size", type=int, default=2000, help="held-out reviews, shared out to the clients")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--secure-agg", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--smoke", action="store_true", help="16 reviews per client, 32 tokens, 96 held out")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rc = {"reviews-per-client": args.reviews_per_client, "max-length": args.max_length,
          "batch-size": args.batch_size, "test-size": args.test_size, "lr": args.lr}
    if args.smoke:
        rc.update({"reviews-per-client": 16, "max-length": 32, "batch-size": 8, "test-size": 96,
                   "lr": 1e-4})
    t0 = time.perf_counter()
    history = run(clients=args.clients, rounds=args.rounds, run_config=rc, secure_agg=args.secure_agg)
    for (rnd, acc), (_, loss) in zip(history.metrics_distributed.get("accuracy", []),
                                     history.losses_distributed, strict=False):
        print(f"round {rnd}: held-out accuracy {acc:.4f}, loss {loss:.4f}", flush=True)
    mode = "secure aggregation (SecAgg+)" if args.secure_agg else "plain FedAvg"
    print(f"huggingface quick start: {args.rounds} round(s), {args.clients} clients, {mode}, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
