"""A custom strategy in the style Flower's docs teach: FedAvg that saves the global model each round.

The same file runs under Flower and under tessera; only the import line differs
(set ``FL_FRAMEWORK=flwr`` to take Flower's, default tessera's)::

    import flwr as fl      # Flower
    import hfl as fl       # tessera
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

if os.environ.get("FL_FRAMEWORK", "hfl") == "flwr":
    import flwr as fl
else:
    import hfl as fl  # type: ignore[no-redef]


class SaveModelStrategy(fl.server.strategy.FedAvg):  # type: ignore[name-defined,misc]
    """FedAvg that writes ``round-<n>-weights.npz`` after each aggregation."""

    def __init__(self, *, out_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[Any, Any]],   # list[tuple[ClientProxy, FitRes]]
        failures: list[Any],              # list[tuple[ClientProxy, FitRes] | BaseException]
    ) -> tuple[Any, dict[str, Any]]:      # tuple[Parameters | None, dict[str, Scalar]]
        # Call aggregate_fit from base class (FedAvg) to aggregate parameters and metrics
        aggregated_parameters, aggregated_metrics = super().aggregate_fit(server_round, results, failures)

        if aggregated_parameters is not None:
            # Convert `Parameters` to `list[np.ndarray]`
            aggregated_ndarrays: list[np.ndarray] = fl.common.parameters_to_ndarrays(aggregated_parameters)

            # Save aggregated_ndarrays to disk
            path = self.out_dir / f"round-{server_round}-weights.npz"
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, *aggregated_ndarrays)
            tmp.replace(path)  # atomic: a reader never sees half a file

        return aggregated_parameters, aggregated_metrics
