"""One-command launcher of the McMahan et al. MNIST experiment.

    python -m examples.mnist_fedavg.run_local            # CNN, 100 clients, C=0.1, E=5, B=10, IID, 25 rounds
    python -m examples.mnist_fedavg.run_local --non-iid  # pathological non-IID
    python -m examples.mnist_fedavg.run_local --smoke    # seconds: 2NN, 10 clients, 2 rounds, 2,000 images

Everything else is passed on to ``examples.mnist_fedavg.run`` (see its --help).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples.mnist_fedavg import run

SMOKE = ["--model", "2nn", "--clients", "10", "--fraction", "0.3", "--epochs", "2",
         "--batch-size", "10", "--lr", "0.1", "--rounds", "2", "--limit-train", "2000",
         "--limit-test", "1000", "--target", "0.5"]
FULL = ["--model", "cnn", "--clients", "100", "--fraction", "0.1", "--epochs", "5",
        "--batch-size", "10", "--rounds", "25", "--stop-at-target"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--smoke" in argv:
        argv.remove("--smoke")
        return run.main(SMOKE + argv)
    return run.main(FULL + argv)


if __name__ == "__main__":
    sys.exit(main())
