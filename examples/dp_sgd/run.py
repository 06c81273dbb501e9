"""Federated MNIST where every client trains with DP-SGD (Opacus), in simulation.

    python -m examples.dp_sgd.run --clients 5 --rounds 5 --noise-multiplier 1.1 \\
        --max-grad-norm 1.0 [--secure-agg] [--limit-train 10000]

Prints, per round, the global model's test accuracy and the largest sample-level ε
(at ``--delta``) any client has spent so far, composed over all its rounds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

import hfl
from examples.dp_sgd.client import DPSGDClient, SmallCNN
from examples.mnist_fedavg.task import DATA_DIR, load, partition
from hfl.torch_utils import get_parameters, set_parameters


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64, help="expected Poisson batch size")
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--noise-multiplier", type=float, default=1.1)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--secure-agg", action="store_true")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-test", type=int, default=2000)
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    return ap


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = load(args.data_dir)
    if args.limit_train:
        xtr, ytr = xtr[: args.limit_train], ytr[: args.limit_train]
    xte, yte = xte[: args.limit_test], yte[: args.limit_test]
    parts = partition(ytr, args.clients, non_iid=False)
    clients = [
        DPSGDClient(i, xtr[torch.from_numpy(p)], ytr[torch.from_numpy(p)],
                    noise_multiplier=args.noise_multiplier, max_grad_norm=args.max_grad_norm,
                    batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, delta=args.delta)
        for i, p in enumerate(parts)
    ]
    model = SmallCNN()
    acc_by_round: list[float] = []

    def evaluate_fn(rnd: int, params: list[Any], config: dict[str, Any]) -> Any:
        set_parameters(model, params)
        with torch.no_grad():
            out = model(xte)
            loss = float(torch.nn.functional.cross_entropy(out, yte))
            acc = float((out.argmax(1) == yte).float().mean())
        if rnd > 0:
            eps = max(c.epsilon for c in clients)
            acc_by_round.append(acc)
            print(f"round {rnd:3d}  test accuracy {acc:.4f}  sample-level epsilon "
                  f"{eps:.2f} (delta={args.delta:g})", flush=True)
        return loss, {"accuracy": acc}

    strategy = hfl.strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=args.clients,
        min_available_clients=args.clients, evaluate_fn=evaluate_fn,
        initial_parameters=hfl.ndarrays_to_parameters(get_parameters(SmallCNN())),
    )
    hfl.simulate(lambda cid: clients[int(cid)], args.clients, strategy=strategy,
                 num_rounds=args.rounds, secure_agg=args.secure_agg)
    return {"accuracy": acc_by_round, "epsilon": max(c.epsilon for c in clients),
            "epsilons": [c.epsilon for c in clients]}


def main(argv: Sequence[str] | None = None) -> int:
    out = run(parser().parse_args(argv))
    print(f"final accuracy {out['accuracy'][-1]:.4f}, largest sample-level epsilon "
          f"{out['epsilon']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
