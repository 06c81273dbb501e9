"""Train a small linear model with :class:`SaveModelStrategy` under Flower or tessera.

    .venv/bin/python -m examples.custom_strategy.run --out runs/custom_strategy
    FL_FRAMEWORK=flwr python -m examples.custom_strategy.run --out /tmp/cs-flwr   # with flwr==1.42.0

Both drive Flower's legacy server API in this process: ``Server(client_manager=
SimpleClientManager(), strategy=...)`` with one ``ClientProxy`` per client, so no
network and no Ray are needed; the strategy, client and driver code are the same
under both. ``--simulate`` (tessera only) runs the same strategy with
``hfl.simulate`` instead (the tessera server, codec messages, seeded sampling).
Prints one JSON line with the final loss and the files written.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from examples.custom_strategy.strategy import SaveModelStrategy, fl

DIM = 4
TRUE_W = np.arange(1.0, DIM + 1)


class LinearClient(fl.client.NumPyClient):  # type: ignore[name-defined,misc]
    """Least squares on this client's rows, a few gradient steps per round."""

    def __init__(self, i: int) -> None:
        rng = np.random.default_rng(100 + i)
        n = 30 + 10 * i
        self.x = rng.normal(size=(n, DIM))
        self.y = self.x @ TRUE_W + 0.1 * rng.normal(size=n)

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(DIM)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        w = parameters[0].copy()
        for _ in range(5):
            w -= 0.1 * self.x.T @ (self.x @ w - self.y) / len(self.y)
        return [w], len(self.y), {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        err = self.x @ parameters[0] - self.y
        return float(np.mean(err**2)), len(self.y), {}


class InProcessProxy(fl.server.client_proxy.ClientProxy):  # type: ignore[name-defined,misc]
    """Flower's ClientProxy over a NumPyClient in this process."""

    def __init__(self, cid: str, client: LinearClient) -> None:
        super().__init__(cid)
        self.client = client

    def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return fl.common.GetPropertiesRes(fl.common.Status(fl.common.Code.OK, ""), {})

    def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        arrays = self.client.get_parameters(ins.config)
        return fl.common.GetParametersRes(fl.common.Status(fl.common.Code.OK, ""),
                                          fl.common.ndarrays_to_parameters(arrays))

    def fit(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        arrays, n, metrics = self.client.fit(fl.common.parameters_to_ndarrays(ins.parameters), ins.config)
        return fl.common.FitRes(fl.common.Status(fl.common.Code.OK, ""),
                                fl.common.ndarrays_to_parameters(arrays), n, metrics)

    def evaluate(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        loss, n, metrics = self.client.evaluate(fl.common.parameters_to_ndarrays(ins.parameters), ins.config)
        return fl.common.EvaluateRes(fl.common.Status(fl.common.Code.OK, ""), loss, n, metrics)

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return fl.common.DisconnectRes(reason="UNKNOWN")


def run(out: Path, *, rounds: int = 3, clients: int = 3, simulate: bool = False) -> dict[str, Any]:
    history: Any
    strategy: Any = SaveModelStrategy(out_dir=out, min_fit_clients=clients, min_evaluate_clients=clients,
                                 min_available_clients=clients)
    if simulate:
        import hfl

        history = hfl.simulate(lambda cid: LinearClient(int(cid)), clients, num_rounds=rounds,
                               strategy=strategy)
    else:
        manager = fl.server.SimpleClientManager()
        for i in range(clients):
            manager.register(InProcessProxy(str(i), LinearClient(i)))
        server = fl.server.Server(client_manager=manager, strategy=strategy)
        history, _elapsed = server.fit(num_rounds=rounds, timeout=None)
    saved = sorted(p.name for p in out.glob("round-*-weights.npz"))
    final = np.load(out / f"round-{rounds}-weights.npz")["arr_0"]
    return {"framework": os.environ.get("FL_FRAMEWORK", "hfl"), "simulate": simulate,
            "losses_distributed": [[r, float(v)] for r, v in history.losses_distributed],
            "saved": saved, "final_weights": final.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/custom_strategy"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--simulate", action="store_true", help="tessera: run with hfl.simulate")
    args = ap.parse_args()
    print(json.dumps(run(args.out, rounds=args.rounds, simulate=args.simulate)))


if __name__ == "__main__":
    main()
