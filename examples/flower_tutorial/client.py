"""The Flower quick start's client, ported: only the imports and start_client's arguments changed.

    python -m examples.flower_tutorial.client --config fed/federation.toml --party client_0
    python -m examples.flower_tutorial.client --config fed/federation.toml --party client_1

CIFAR-10 is read from ``$TESSERA_DATA/cifar10/`` or ``--cifar10 PATH`` (see task.py); without it
the client says so and falls back to MNIST.
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

import hfl as fl  # Flower: import flwr as fl
from examples.flower_tutorial.task import load_data, make_net, test, train
from party import cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = cli.parser("examples.flower_tutorial.client", __doc__)
    cli.add_federation(ap, party_help="this client's party name, e.g. client_0")
    ap.add_argument("--server-address", default=None, help="router host:port (default: from the TOML)")
    ap.add_argument("--partition", type=int, default=None, help="default: the number in --name")
    ap.add_argument("--num-partitions", type=int, default=2)
    ap.add_argument("--cifar10", default=None,
                    help="CIFAR-10 (an official archive or extracted batches; default $TESSERA_DATA/cifar10)")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many examples")
    ap.add_argument("--lr", type=float, default=0.001, help="SGD learning rate (quick start: 0.001)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small CNN: 1 is fastest)")
    args = ap.parse_args(argv)
    return cli.run("flower_tutorial.client", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    pid = args.partition if args.partition is not None else int(args.party.rsplit("_", 1)[-1])
    trainloader, testloader, dataset = load_data(pid, args.num_partitions, cifar10=args.cifar10,
                                                 limit=args.limit)
    print(f"{args.party}: {dataset}, {len(trainloader[1])} training / {len(testloader[1])} test images",
          flush=True)
    net = make_net(dataset)

    # ---- from here on, Flower's quick start verbatim (but for the loaders' types) ----
    class FlowerClient(fl.client.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[Any]:
            return [val.cpu().numpy() for _, val in net.state_dict().items()]

        def set_parameters(self, parameters: list[Any]) -> None:
            params_dict = zip(net.state_dict().keys(), parameters, strict=True)
            state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
            net.load_state_dict(state_dict, strict=True)

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            self.set_parameters(parameters)
            train(net, trainloader, epochs=1, lr=args.lr)
            return self.get_parameters(config={}), len(trainloader[1]), {}

        def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            self.set_parameters(parameters)
            loss, accuracy = test(net, testloader)
            return loss, len(testloader[1]), {"accuracy": accuracy}

    why = fl.client.start_client(server_address=args.server_address,
                                 client=FlowerClient().to_client(),
                                 federation=args.config, name=args.party)
    print(f"{args.party}: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
