"""Trees, XGBoost's split gain, and a centralized plaintext reference implementation.

A federated tree is held in halves: the active party holds the structure, every leaf
weight and the owner of each split; each split's (feature, bin) stays with its owner in a
lookup table keyed by an opaque record id (FATE's lookup-table model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vfl.boost.params import BoostParams

FloatArray = npt.NDArray[np.float64]
RT_EPS = 1e-6  # XGBoost's kRtEps: a split must gain more than this


@dataclass
class Node:
    depth: int
    owner: str = ""  # "" for a leaf
    record: int = -1  # the owner's lookup-table id
    left: int = -1
    right: int = -1
    weight: float = 0.0  # leaf value (learning rate applied)
    gain: float = 0.0
    cover: float = 0.0  # hessian sum
    grad: float = 0.0  # gradient sum

    @property
    def is_leaf(self) -> bool:
        return self.owner == ""

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "owner": self.owner, "record": self.record, "left": self.left,
                "right": self.right, "weight": self.weight, "gain": self.gain, "cover": self.cover,
                "grad": self.grad}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        return cls(int(d["depth"]), str(d["owner"]), int(d["record"]), int(d["left"]), int(d["right"]),
                   float(d["weight"]), float(d["gain"]), float(d["cover"]), float(d["grad"]))


def split_gain(gl: FloatArray, hl: FloatArray, g: float, h: float, lam: float) -> FloatArray:
    gr, hr = g - gl, h - hl
    return gl * gl / (hl + lam) + gr * gr / (hr + lam) - g * g / (h + lam)


def best_candidate(gl: FloatArray, hl: FloatArray, g: float, h: float, p: BoostParams) -> tuple[int, float]:
    """Index of the best valid candidate and its gain, or (-1, 0.0)."""
    if len(gl) == 0:
        return -1, 0.0
    gains = split_gain(gl, hl, g, h, p.reg_lambda)
    ok = (hl >= p.min_child_weight) & ((h - hl) >= p.min_child_weight)
    gains = np.where(ok, gains, -np.inf)
    i = int(np.argmax(gains))
    gbest = float(gains[i])
    if not math.isfinite(gbest) or gbest <= RT_EPS or gbest < p.gamma:
        return -1, 0.0
    return i, gbest


def leaf_weight(g: float, h: float, p: BoostParams) -> float:
    return -p.learning_rate * g / (h + p.reg_lambda)


def sigmoid(m: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-m))


def base_margin(y: FloatArray, p: BoostParams) -> float:
    b = float(np.mean(y)) if p.base_score is None else float(p.base_score)
    if p.objective == "binary:logistic":
        b = min(max(b, 1e-6), 1 - 1e-6)
        return math.log(b / (1 - b))
    return b


def grad_hess(y: FloatArray, margin: FloatArray, objective: str) -> tuple[FloatArray, FloatArray]:
    if objective == "binary:logistic":
        pr = sigmoid(margin)
        return pr - y, np.maximum(pr * (1 - pr), 1e-16)
    return margin - y, np.ones_like(margin)


def check_labels(y: Any, objective: str) -> FloatArray:
    from party.errors import ConfigError

    a = np.asarray(y, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise ConfigError("labels must be a non-empty vector of finite numbers")
    if objective == "binary:logistic" and not np.isin(a, (0.0, 1.0)).all():
        bad = a[~np.isin(a, (0.0, 1.0))][:3].tolist()
        raise ConfigError(f"binary:logistic needs labels 0/1, got e.g. {bad}")
    return a


# ---------------------------------------------------------------- the reference


@dataclass
class RefTree:
    """A centralized tree over the joined bin table: node -> (feature, bin) or leaf weight."""

    nodes: list[dict[str, Any]]

    def predict(self, bins: npt.NDArray[np.int8]) -> FloatArray:
        out = np.zeros(len(bins))
        for r in range(len(bins)):
            i = 0
            while "leaf" not in self.nodes[i]:
                nd = self.nodes[i]
                i = nd["left"] if bins[r, nd["feature"]] <= nd["bin"] else nd["right"]
            out[r] = self.nodes[i]["leaf"]
        return out


def fit_reference(bins: npt.NDArray[np.int8], y: FloatArray, p: BoostParams) -> tuple[float, list[RefTree]]:
    """Plain, centralized XGBoost-style boosting on a binned table (no sampling).

    The federated trainer must grow exactly these trees (same splits, same leaves up to
    fixed-point rounding) when given the same bins, columns in the order active then passives.
    """
    y = check_labels(y, p.objective)
    base = base_margin(y, p)
    margin = np.full(len(y), base)
    trees = []
    n_bins = [int(bins[:, f].max(initial=0)) + 1 for f in range(bins.shape[1])]
    for _ in range(p.n_trees):
        g, h = grad_hess(y, margin, p.objective)
        nodes: list[dict[str, Any]] = [{}]
        frontier = [(0, np.arange(len(y)), 0)]
        while frontier:
            nxt = []
            for nid, rows, depth in frontier:
                gs, hs = float(g[rows].sum()), float(h[rows].sum())
                best: tuple[float, int, int] | None = None
                if depth < p.max_depth:
                    for f in range(bins.shape[1]):
                        gb = np.bincount(bins[rows, f], weights=g[rows], minlength=n_bins[f])
                        hb = np.bincount(bins[rows, f], weights=h[rows], minlength=n_bins[f])
                        cb = np.bincount(bins[rows, f], minlength=n_bins[f])
                        cum = np.cumsum(cb)
                        cand = np.flatnonzero((cb > 0) & (cum < len(rows)))
                        i, gain = best_candidate(np.cumsum(gb, dtype=np.float64)[cand], np.cumsum(hb, dtype=np.float64)[cand], gs, hs, p)
                        if i >= 0 and (best is None or gain > best[0]):
                            best = (gain, f, int(cand[i]))
                if best is None:
                    nodes[nid] = {"leaf": leaf_weight(gs, hs, p)}
                    continue
                _, f, b = best
                left = rows[bins[rows, f] <= b]
                right = rows[bins[rows, f] > b]
                li, ri = len(nodes), len(nodes) + 1
                nodes += [{}, {}]
                nodes[nid] = {"feature": f, "bin": b, "left": li, "right": ri, "gain": best[0]}
                nxt += [(li, left, depth + 1), (ri, right, depth + 1)]
            frontier = nxt
        t = RefTree(nodes)
        trees.append(t)
        margin = margin + t.predict(bins)
    return base, trees
