"""HFL pieces of the soak benchmark (``benchmarks/soak.py``).

They run in the server and client processes the soak launches
(``python -m benchmarks.soak _hfl_server|_hfl_client ...``, dispatched by ``soak.main``)
and in the soak process itself for the in-memory ``hfl.simulate`` reference.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

HFL_CLIENTS = 4

DIM = 5


def _hfl_strategy(on_fit: bool = True) -> Any:
    import hfl

    return hfl.FedAvg(fraction_fit=1.0, min_fit_clients=2, min_available_clients=2,
                      fraction_evaluate=0.0, min_evaluate_clients=0,
                      on_fit_config_fn=(lambda r: {"round": r}) if on_fit else None)


def _linear_client(i: int, *, sleep_s: float = 0.0, fail_rounds: set[int] | None = None) -> Any:
    """Linear regression [w (DIM,), b ()] by 3 GD steps on client ``i``'s data; deterministic."""
    import numpy as np

    import hfl

    rng = np.random.default_rng(1000 + i)
    x = rng.normal(size=(40 + 9 * i, DIM))
    y = x @ (np.arange(1, DIM + 1) / DIM) + 0.5 + 0.1 * rng.normal(size=len(x))

    class Linear(hfl.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[Any]:
            return [np.zeros(DIM, np.float32), np.zeros((), np.float32)]

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            if fail_rounds is not None and config.get("round") in fail_rounds:
                raise RuntimeError("replay: this client failed this round in the gRPC run")
            if sleep_s:
                time.sleep(sleep_s)  # a round lasts long enough for a kill to land mid-training
            w, b = (np.asarray(p, np.float64).copy() for p in parameters)
            for _ in range(3):
                err = x @ w + b - y
                w -= 0.05 * (x.T @ err / len(y))
                b -= 0.05 * err.mean()
            loss = float(np.mean((x @ w + b - y) ** 2))
            return [w.astype(np.float32), np.asarray(b, np.float32)], len(y), {"train_loss": loss}

        def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            w, b = (np.asarray(p, np.float64) for p in parameters)
            return float(np.mean((x @ w + b - y) ** 2)), len(y), {}

    return Linear()


def _simulate(rounds: int, seed: int, survivors: dict[int, list[str]] | None) -> list[Any]:
    """Final model of an in-memory run; with ``survivors``, clients outside a round's list fail it."""
    import numpy as np

    import hfl

    def client_fn(cid: str) -> Any:
        fails = None if survivors is None else {
            r for r, s in survivors.items() if f"client_{cid}" not in s}
        return _linear_client(int(cid), fail_rounds=fails)

    h = hfl.simulate(client_fn, HFL_CLIENTS, num_rounds=rounds, strategy=_hfl_strategy(), seed=seed)
    assert h.parameters is not None
    return [np.asarray(a) for a in h.parameters]


def _maxdiff(a: list[Any], b: list[Any]) -> float:
    import numpy as np

    return float(max(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
                     for x, y in zip(a, b, strict=True)))


def hfl_server_main(fed: str, d: str, rounds: str, seed: str) -> int:
    import logging

    import hfl

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    h = hfl.start_server(federation=fed, host_router=False, progress=False,
                         config=hfl.ServerConfig(num_rounds=int(rounds), round_timeout=60),
                         strategy=_hfl_strategy(), seed=int(seed), min_clients_at_start=HFL_CLIENTS,
                         checkpoint_dir=Path(d) / "ck", output_dir=Path(d) / "out",
                         wait_for_clients_s=120)
    assert h.parameters is not None
    out = {"rounds": h.rounds, "parameters": [a.tolist() for a in h.parameters]}
    tmp = Path(d) / "result.json.tmp"
    tmp.write_text(json.dumps(out))
    tmp.replace(Path(d) / "result.json")
    print(f"server: {len(h.rounds)} rounds", flush=True)
    return 0


def hfl_client_main(fed: str, i: str) -> int:
    import logging

    import hfl

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    why = hfl.start_client(client=_linear_client(int(i), sleep_s=0.15), federation=fed,
                           name=f"client_{i}", max_wait_time=120)
    print(f"client_{i}: {why}", flush=True)
    return 0 if why == "shutdown" else 1
