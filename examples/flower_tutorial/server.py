"""The Flower quick start's server, ported: FedAvg, 3 rounds, accuracy averaged by examples.

    python -m examples.flower_tutorial.server --config fed/federation.toml [--rounds 3]

It hosts the federation's router (mutual TLS) on --server-address, waits for the
two clients, trains, prints the history and writes history.json/png to --out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import hfl as fl  # Flower: import flwr as fl
from hfl.common import Metrics
from party import cli


def weighted_average(metrics: list[tuple[int, Metrics]]) -> Metrics:
    accuracies = [num_examples * float(m["accuracy"]) for num_examples, m in metrics]
    examples = [num_examples for num_examples, _ in metrics]
    return {"accuracy": sum(accuracies) / sum(examples)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.flower_tutorial.server", __doc__)
    cli.add_federation(ap, party=False)
    ap.add_argument("--server-address", default=None, help="router listen address (default: the TOML's)")
    ap.add_argument("--rounds", type=int, default=3)
    cli.add_out(ap, help="directory for history.json and history.png")
    args = ap.parse_args(argv)
    return cli.run("flower_tutorial.server", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    strategy = fl.server.strategy.FedAvg(evaluate_metrics_aggregation_fn=weighted_average)
    history = fl.server.start_server(
        server_address=args.server_address,
        config=fl.server.ServerConfig(num_rounds=args.rounds),
        strategy=strategy,
        federation=args.config,
        output_dir=args.out,
        progress=False,
    )
    for rnd, acc in history.metrics_distributed.get("accuracy", []):
        print(f"round {rnd}: federated accuracy {acc:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
