"""The MNIST example runs end to end in its --smoke form (the gRPC examples' run_local --smoke
are multi-process and belong in tests/examples)."""

from __future__ import annotations

import pytest


def test_mnist_fedavg_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.mnist_fedavg import run_local

    assert run_local.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert '"rounds_run": 2' in out and "test accuracy" in out
