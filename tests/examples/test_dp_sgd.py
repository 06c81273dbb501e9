"""examples.dp_sgd: Opacus DP-SGD inside hfl clients, with ε composed across rounds."""

from __future__ import annotations

import pytest

pytest.importorskip("opacus", reason="the opacus extra is installed by make; see pyproject")


@pytest.mark.slow
def test_dp_sgd_clients_learn_and_compose_epsilon_across_rounds():
    from opacus.accountants import RDPAccountant

    from examples.dp_sgd import run

    args = run.parser().parse_args(["--clients", "2", "--rounds", "2", "--limit-train", "1200",
                                    "--limit-test", "500", "--lr", "1.0"])
    out = run.run(args)
    assert len(out["accuracy"]) == 2
    assert out["accuracy"][-1] > 0.3  # well above chance (0.1) after two rounds
    # ε after two rounds is the composition of both rounds' DP-SGD, not one round's
    steps = -(-600 // 64)  # Opacus: one epoch = len(loader) Poisson batches, q = 1/len
    one, two = RDPAccountant(), RDPAccountant()
    one.history = [(1.1, 1 / steps, steps)]
    two.history = [(1.1, 1 / steps, steps)] * 2
    assert out["epsilon"] == pytest.approx(two.get_epsilon(1e-5), rel=1e-6)
    assert out["epsilon"] > one.get_epsilon(1e-5) * 1.1
    for e in out["epsilons"]:
        assert e == pytest.approx(out["epsilon"], rel=1e-6)
