"""Small tables for the SecureBoost tests (FATE's default_credit hetero split, first rows)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from party.files import data_dir
from vfl.boost import Binner


@functools.lru_cache(maxsize=4)
def credit(rows: int = 300, max_bin: int = 16) -> dict[str, Any]:
    g = np.loadtxt(data_dir() / "fate" / "default_credit_hetero_guest.csv", delimiter=",", skiprows=1,
                   max_rows=rows)
    h = np.loadtxt(data_dir() / "fate" / "default_credit_hetero_host.csv", delimiter=",", skiprows=1,
                   max_rows=rows)
    xa, xp, y = g[:, 2:], h[:, 1:], g[:, 1]
    bina, binp = Binner.fit(xa, max_bin=max_bin), Binner.fit(xp, max_bin=max_bin)
    return {"y": y, "xa": xa, "xp": xp, "bina": bina, "binp": binp, "ba": bina.transform(xa),
            "bp": binp.transform(xp)}


def global_splits(model: Any, passive: Any, n_active: int) -> list[list[tuple[int, int]]]:
    """Each tree's internal nodes as (column of the joined table, bin), in node order."""
    return joined_splits(model, dict.fromkeys(model.passives, (passive, n_active)))


def joined_splits(model: Any, passives: dict[str, tuple[Any, int]]) -> list[list[tuple[int, int]]]:
    """As :func:`global_splits`, ``passives``: each passive party's booster and the column of the
    joined table its first feature is."""
    out = []
    for tree in model.trees:
        s = []
        for nd in tree:
            if nd.is_leaf:
                continue
            if nd.owner in passives:
                booster, first = passives[nd.owner]
                f, b, _ = booster.table[nd.record]
                s.append((first + f, b))
            else:
                s.append(model.table[nd.record])
        out.append(s)
    return out


def ref_splits(trees: Any) -> list[list[tuple[int, int]]]:
    return [[(n["feature"], n["bin"]) for n in t.nodes if "leaf" not in n] for t in trees]
