"""The MNIST example runs end to end in its --smoke form (the gRPC examples' run_local --smoke
are multi-process and belong in tests/examples)."""

from __future__ import annotations

import pytest


def test_mnist_fedavg_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.mnist_fedavg import run_local

    assert run_local.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert '"rounds_run": 2' in out and "test accuracy" in out


def test_mnist_fedavg_resumes_from_its_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A long run (the non-IID benchmark takes hours) continues where it stopped."""
    import json

    from examples.mnist_fedavg import run_local

    ck = ["--checkpoint-dir", str(tmp_path / "ck"), "--target", "1.01"]
    assert run_local.main(["--smoke", *ck, "--rounds", "1"]) == 0
    first = capsys.readouterr().out
    assert "round    1" in first
    assert run_local.main(["--smoke", *ck, "--rounds", "3"]) == 0
    second = capsys.readouterr().out
    assert "round    1" not in second and "round    2" in second and "round    3" in second
    summary = json.loads(second.strip().splitlines()[-1])
    assert summary["rounds_run"] == 3 and summary["rounds_to_target"] is None
