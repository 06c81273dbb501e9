"""What the MNIST FedAvg benchmarks (fedavg_mnist, simulation, dp) share.

- :func:`iid_clients`: ``client_fn(cid)`` over an IID partition of MNIST's training set
  (``examples.mnist_fedavg``), and the test set;
- :func:`flower_proxies`: a Flower ``SimpleClientManager`` of in-process ``ClientProxy``
  objects whose ``fit`` calls that same client code (Flower's NumPy serialisation, no Ray);
- :func:`timed_fit` / :func:`timed_flower_fedavg`: clients that report when they trained
  and a Flower FedAvg that records each round's span and those intervals;
- :func:`union_s`: how long at least one client was training.

Flower is imported only inside the functions that need it (the ``bench`` extra).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from examples.mnist_fedavg.task import MnistClient, load, partition

Interval = tuple[float, float]


def iid_clients(clients: int, *, model: str, epochs: int, batch_size: int, lr: float,
                limit_train: int | None = None, timings: list[Interval] | None = None,
                ) -> tuple[Callable[[str], MnistClient], tuple[torch.Tensor, torch.Tensor]]:
    """``client_fn(cid)`` for ``clients`` IID shards (seed 0) of the first ``limit_train``
    training images (all when None), each client appending its training spans to
    ``timings`` when given; and MNIST's test set ``(x, y)``."""
    xtr, ytr, xte, yte = load()
    if limit_train:
        xtr, ytr = xtr[:limit_train], ytr[:limit_train]
    parts = partition(ytr, clients, non_iid=False, seed=0)

    def client_fn(cid: str) -> MnistClient:
        idx = torch.from_numpy(parts[int(cid)])
        return MnistClient(int(cid), xtr[idx], ytr[idx], model=model, epochs=epochs,
                           batch_size=batch_size, lr=lr, timings=timings)

    return client_fn, (xte, yte)


def flower_proxies(client_fn: Callable[[str], Any], n: int) -> Any:
    """A Flower ``SimpleClientManager`` holding clients ``"0"`` .. ``str(n - 1)``: in-process
    ``ClientProxy`` objects whose ``fit`` runs ``client_fn(cid).fit`` (only ``fit`` is used)."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import SimpleClientManager
    from flwr.server.client_proxy import ClientProxy

    class Proxy(ClientProxy):
        def fit(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            params, k, metrics = client_fn(self.cid).fit(parameters_to_ndarrays(ins.parameters),
                                                         dict(ins.config))
            return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(params), k, metrics)

        def get_properties(self, *a: Any) -> Any:
            raise NotImplementedError

        get_parameters = evaluate = reconnect = get_properties

    cm = SimpleClientManager()
    for i in range(n):
        cm.register(Proxy(str(i)))
    return cm


def timed_fit(fit: Callable[[Any, dict[str, Any]], Any], parameters: Any,
              config: dict[str, Any]) -> Any:
    """``fit(parameters, config)`` with when it ran (``time.perf_counter``, CLOCK_MONOTONIC,
    the same in every process of the machine) added to its metrics as ``t0`` and ``t1``."""
    t0 = time.perf_counter()
    out, n, metrics = fit(parameters, config)
    return out, n, {**metrics, "t0": t0, "t1": time.perf_counter()}


def timed_flower_fedavg(*, fail_on_failures: bool, **kwargs: Any
                        ) -> tuple[Any, list[tuple[float, float, list[Interval]]]]:
    """Flower's ``FedAvg(**kwargs)`` that records, per round, (start of ``configure_fit``, end
    of ``aggregate_fit``, the ``(t0, t1)`` each result's metrics carry, see :func:`timed_fit`),
    in the list returned with it; with ``fail_on_failures`` a round with a failed client
    raises (after it is recorded)."""
    from flwr.server.strategy import FedAvg

    marks: list[tuple[float, float, list[Interval]]] = []
    start: list[float] = []

    class TimedFedAvg(FedAvg):
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            start.append(time.perf_counter())
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_fit(server_round, results, failures)
            ivs = [(float(r.metrics["t0"]), float(r.metrics["t1"])) for _, r in results]
            marks.append((start[-1], time.perf_counter(), ivs))
            if fail_on_failures and failures:
                raise RuntimeError(f"flower round {server_round}: {len(failures)} client failures")
            return out

    return TimedFedAvg(**kwargs), marks


def union_s(intervals: list[Interval], lo: float = -float("inf"), hi: float = float("inf")) -> float:
    """Length of the union of ``intervals`` clipped to [lo, hi]."""
    xs = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, end = 0.0, -float("inf")
    start = None
    for a, b in xs:
        if start is None or a > end:
            if start is not None:
                total += end - start
            start, end = a, b
        else:
            end = max(end, b)
    if start is not None:
        total += end - start
    return total
