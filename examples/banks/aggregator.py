"""The aggregator of the three-bank credit federation: FedAvg with secure aggregation (SecAgg+).

    python -m examples.banks.aggregator --config fed/federation.toml [--rounds 10] [--out DIR]

It hosts the router (mutual TLS), learns only the sum of the banks' weighted
updates each round, and evaluates the global model on default_credit_homo_test.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import hfl
from examples.banks.task import DATA_DIR, TEST_FILE, evaluate, load_csv, make_model
from hfl.torch_utils import get_parameters, set_parameters
from party import cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.banks.aggregator", __doc__)
    cli.add_federation(ap, party=False)
    ap.add_argument("--server-address", default=None)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    cli.add_out(ap, help="history.json/png and per-round checkpoints")
    ap.add_argument("--no-secure-agg", action="store_true", help="plain FedAvg (for comparison)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    return cli.run("aggregator", lambda: serve(args))


def serve(args: argparse.Namespace) -> int:
    xt, yt = load_csv(f"{args.data_dir}/{TEST_FILE}")
    model = make_model()

    def evaluate_fn(rnd: int, params: list[np.ndarray], config: dict[str, Any]) -> Any:
        set_parameters(model, params)
        loss, m = evaluate(model, xt, yt)
        print(f"round {rnd:3d}: test loss {loss:.4f}  accuracy {m['accuracy']:.4f}  "
              f"AUC {m['auc']:.4f}", flush=True)
        return loss, m

    strategy = hfl.FedAvg(
        min_fit_clients=3, min_available_clients=3, fraction_evaluate=1.0, min_evaluate_clients=3,
        initial_parameters=hfl.ndarrays_to_parameters(get_parameters(make_model())),
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda r: {"server_round": r, "epochs": 1},
        fit_metrics_aggregation_fn=hfl.strategy.weighted_metrics,
        evaluate_metrics_aggregation_fn=hfl.strategy.weighted_metrics,
    )
    history = hfl.start_server(
        server_address=args.server_address, config=hfl.ServerConfig(num_rounds=args.rounds),
        strategy=strategy, federation=args.config, progress=False,
        secure_agg=False if args.no_secure_agg else {"clip": 8.0, "timeout_s": 60.0},
        output_dir=args.out, checkpoint_dir=f"{args.out}/checkpoints" if args.out else None,
    )
    final = history.metrics_centralized
    print(json.dumps({"rounds": len(history.rounds),
                      "secure_agg": [r.get("secure_agg") for r in history.rounds][-1],
                      "test_accuracy": final["accuracy"][-1][1], "test_auc": final["auc"][-1][1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
