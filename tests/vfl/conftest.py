"""Fixtures shared by the VFL tests: the first rows of FATE's default_credit hetero split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: rows the trainers fit on; 60 more follow for scoring
ROWS = 240


def credit_rows(data_dir: Path, rows: int) -> dict[str, Any]:
    """The first ``rows`` customers of both parties: ids, labels y, the bank's xa, the fintech's xp."""
    g = np.loadtxt(data_dir / "fate" / "default_credit_hetero_guest.csv", delimiter=",",
                   skiprows=1, max_rows=rows)
    h = np.loadtxt(data_dir / "fate" / "default_credit_hetero_host.csv", delimiter=",",
                   skiprows=1, max_rows=rows)
    assert (g[:, 0] == h[:, 0]).all()
    return {"ids": [str(int(i)) for i in g[:, 0]], "y": g[:, 1], "xa": g[:, 2:], "xp": h[:, 1:]}


@pytest.fixture(scope="module")
def data(data_dir: Path) -> dict[str, Any]:
    """``ROWS`` + 60 aligned customers (a module may define its own ``data`` for other sizes)."""
    return credit_rows(data_dir, ROWS + 60)
