"""McMahan et al. (2017) MNIST experiments in simulation: FedAvg, IID or pathological non-IID.

    python -m examples.mnist_fedavg.run --model cnn --clients 100 --fraction 0.1 --epochs 5 \\
        --batch-size 10 --rounds 50 --target 0.99 [--non-iid] [--out runs/mnist_iid]

Prints one line per round (test accuracy) and, at the end, the round at which the
target accuracy was first reached. ``--limit-train N`` trains on the first N
images only (quick runs); the test set is always the full 10,000 unless
``--limit-test`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import hfl
from examples.mnist_fedavg.task import (
    DATA_DIR,
    MnistClient,
    central_evaluate,
    load,
    make_model,
    num_params,
    partition,
)
from hfl.torch_utils import get_parameters
from party import cli


def parser() -> argparse.ArgumentParser:
    ap = cli.parser("examples.mnist_fedavg.run", __doc__)
    ap.add_argument("--model", choices=["cnn", "2nn"], default="cnn")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.1, help="C: fraction of clients per round")
    ap.add_argument("--epochs", type=int, default=5, help="E: local epochs")
    ap.add_argument("--batch-size", type=int, default=10, help="B: local batch size")
    ap.add_argument("--lr", type=float, default=0.05, help="client learning rate")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--non-iid", action="store_true", help="2 label-sorted shards per client")
    ap.add_argument("--secure-agg", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-test", type=int, default=None)
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    cli.add_out(ap, help="history.json/png go here")
    ap.add_argument("--stop-at-target", action="store_true")
    ap.add_argument("--checkpoint-dir", default=None,
                    help="checkpoint each round here; rerunning the same command resumes")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def run(args: argparse.Namespace, *, timings: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """Run one experiment; returns a summary dict."""
    torch.set_num_threads(1)  # one thread per worker: the pool provides the parallelism
    xtr, ytr, xte, yte = load(args.data_dir)
    if args.limit_train:
        xtr, ytr = xtr[:args.limit_train], ytr[:args.limit_train]
    if args.limit_test:
        xte, yte = xte[:args.limit_test], yte[:args.limit_test]
    parts = partition(ytr, args.clients, non_iid=args.non_iid, seed=args.seed)

    def client_fn(cid: str) -> MnistClient:
        idx = torch.from_numpy(parts[int(cid)])
        return MnistClient(int(cid), xtr[idx], ytr[idx], model=args.model, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, timings=timings)

    base_eval = central_evaluate(args.model, xte, yte)

    def evaluate_fn(rnd: int, params: list[Any], config: dict[str, Any]) -> Any:
        loss, m = base_eval(rnd, params, config)
        print(f"round {rnd:4d}  test accuracy {m['accuracy']:.4f}  loss {loss:.4f}", flush=True)
        return loss, m

    def first_round_at_target(h: hfl.History) -> int | None:
        # from the history, so a run resumed from a checkpoint still knows earlier rounds
        return next((r for r, a in h.metrics_centralized.get("accuracy", [])
                     if r > 0 and a >= args.target), None)

    init = get_parameters(make_model(args.model, seed=args.seed))
    strategy = hfl.FedAvg(
        fraction_fit=args.fraction, min_fit_clients=1, min_available_clients=args.clients,
        fraction_evaluate=0.0, evaluate_fn=evaluate_fn,
        initial_parameters=hfl.ndarrays_to_parameters(init),
        on_fit_config_fn=lambda r: {"server_round": r},
    )
    t0 = time.perf_counter()
    history = hfl.simulate(client_fn, args.clients, num_rounds=args.rounds, strategy=strategy,
                           num_workers=args.workers, seed=args.seed, output_dir=args.out,
                           secure_agg={"clip": 8.0} if args.secure_agg else False,
                           checkpoint_dir=args.checkpoint_dir,
                           stop_condition=(lambda h: first_round_at_target(h) is not None)
                           if args.stop_at_target else None)
    wall = time.perf_counter() - t0
    acc = history.metrics_centralized.get("accuracy", [])
    return {
        "model": args.model, "params": num_params(make_model(args.model)),
        "partition": "non-iid" if args.non_iid else "iid", "clients": args.clients,
        "C": args.fraction, "E": args.epochs, "B": args.batch_size, "lr": args.lr,
        "rounds_run": len(history.rounds), "target": args.target,
        "rounds_to_target": first_round_at_target(history), "final_accuracy": acc[-1][1] if acc else None,
        "wall_s": round(wall, 1),
        # all rounds, including those run before a resume
        "rounds_s": round(sum(r.get("time_s", 0.0) for r in history.rounds), 1),
        "history": history,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        out = run(args)
        out.pop("history")
        print(json.dumps(out))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        return 0

    return cli.run("mnist_fedavg", body, errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
