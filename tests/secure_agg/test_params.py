"""Configuration checks: n < 3, infeasible thresholds, overflow (threats rows 7, 11, 12)."""

from __future__ import annotations

import pytest

from party.errors import ConfigError
from secure_agg import SecAggParams, default_degree


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_clients_refused(n: int) -> None:
    # threats row 12: with two clients each could subtract its own input from the sum
    with pytest.raises(ConfigError, match=">= 3"):
        SecAggParams(num_clients=n, vector_length=4)


def test_defaults_follow_the_design() -> None:
    p = SecAggParams(num_clients=100, vector_length=10)
    assert p.mode == "secagg+"
    assert p.degree == default_degree(100) == 20  # ceil(3 log2 100) = 20
    assert p.holders == 21 and p.t == 11
    assert p.step == pytest.approx(8.0 / 2**31)
    full = SecAggParams(num_clients=20, vector_length=10, mode="secagg")
    assert full.complete and full.holders == 20 and full.t == 11
    # SecAgg+ on a small cohort falls back to the complete graph (as Google's does)
    assert SecAggParams(num_clients=8, vector_length=1).complete


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # t <= (h + c)/2: two disjoint t-sets of holders exist (semi-malicious server attack)
        ({"num_clients": 20, "mode": "secagg", "threshold": 10}, "infeasible threshold t=10"),
        ({"num_clients": 100, "neighbours": 20, "threshold": 7}, "infeasible threshold t=7"),
        ({"num_clients": 100, "neighbours": 20, "threshold": 12, "corrupt_fraction": 0.1},
         r"\(21 \+ 3\)/2"),
        ({"num_clients": 20, "mode": "secagg", "threshold": 21}, r"in \[2, 20\]"),
        ({"num_clients": 20, "mode": "secagg", "threshold": 1}, r"in \[2, 20\]"),
        # Google's rule: corrupt + 2 * dropout <= 0.9
        ({"num_clients": 100, "dropout_fraction": 0.3, "corrupt_fraction": 0.35}, "> 0.9"),
        # expected survivors below the threshold
        ({"num_clients": 100, "neighbours": 20, "threshold": 20}, "expected to remain"),
        ({"num_clients": 100, "neighbours": 7}, "even int"),
        ({"num_clients": 100, "mode": "secagg", "neighbours": 8}, "only meaningful"),
        ({"num_clients": 100, "mode": "bogus"}, "mode"),
        ({"num_clients": 100, "modulus_bits": 48}, "modulus_bits"),
        ({"num_clients": 100, "clip": 0.0}, "clip"),
        ({"num_clients": 5000}, "overflow"),  # 5000 * 2**20 * 2**31 >= 2**63
        ({"num_clients": 100, "modulus_bits": 32, "quant_bits": 16}, "overflow"),
        ({"num_clients": 100, "modulus_bits": 32}, "quant_bits"),
    ],
)
def test_infeasible_configurations_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SecAggParams(vector_length=10, **kwargs)  # type: ignore[arg-type]


def test_feasibility_table_for_typical_cohorts() -> None:
    # threats row 7's figure: the default (k, t) accepted for n in {10, 100, 1000}
    table = {n: (SecAggParams(num_clients=n, vector_length=1).degree,
                 SecAggParams(num_clients=n, vector_length=1).t) for n in (10, 100, 1000)}
    assert table == {10: (9, 6), 100: (20, 11), 1000: (30, 16)}
    for n, (k, t) in table.items():
        assert 2 * t > k + 1  # t > h/2
        with pytest.raises(ConfigError):
            SecAggParams(num_clients=n, vector_length=1, threshold=(k + 1) // 2)
