"""Data and model code shared by bank.py and fintech.py (each party runs it on its own data).

Nothing here crosses a party boundary: each party reads its own CSV, fits its
own preprocessing on its own training rows, and builds its own bottom model.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from vfl.split import ActiveHead, default_active, default_passive

#: Columns with at most this many distinct values are one-hot encoded (FATE's
#: default_credit: SEX, EDUCATION, MARRIAGE, PAY_0..PAY_6).
MAX_CATEGORIES = 12


@dataclass
class PartyTable:
    """One party's CSV: row IDs, feature matrix, optional labels."""

    ids: list[str]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64] | None
    columns: list[str]


def read_table(path: str | Path, *, id_column: str = "id", label: str | None = None) -> PartyTable:
    """Read a party CSV (first row: header). Refuses duplicate IDs and non-numeric features."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file")
    head, body = rows[0], rows[1:]
    if id_column not in head:
        raise ValueError(f"{path}: no {id_column!r} column (columns: {head[:8]}...)")
    ic = head.index(id_column)
    lc = head.index(label) if label else None
    if label and lc is None:
        raise ValueError(f"{path}: no label column {label!r}")
    feat = [i for i in range(len(head)) if i != ic and i != lc]
    ids = [r[ic] for r in body]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate IDs")
    try:
        x = np.array([[float(r[i]) if r[i] != "" else np.nan for i in feat] for r in body])
        y = np.array([float(r[lc]) for r in body]) if lc is not None else None
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value ({e})") from None
    return PartyTable(ids=ids, x=x.reshape(len(body), len(feat)), y=y,
                      columns=[head[i] for i in feat])


def by_id(tab: PartyTable) -> PartyTable:
    """The rows sorted by ID. PSI's agreed order comes from fresh random keys in every run, so
    both parties sort their aligned rows the same way before splitting: the train/test split
    (and every shuffle after it) then depends on ``--seed`` alone, not on the PSI run."""
    order = sorted(range(len(tab.ids)), key=tab.ids.__getitem__)
    return PartyTable(ids=[tab.ids[i] for i in order], x=tab.x[order],
                      y=None if tab.y is None else tab.y[order], columns=tab.columns)


def test_split(rows: int, *, test_fraction: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices of the aligned table; both parties compute the same split."""
    perm = np.random.default_rng([seed, 7]).permutation(rows)
    n_test = int(rows * test_fraction)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


class Preprocessor:
    """One-hot for low-cardinality columns; for the rest, a standardised copy (clipped to ±5)
    and a quantile-normalised copy (empirical CDF on the training rows -> normal scores)."""

    def fit(self, x: npt.NDArray[np.float64]) -> Preprocessor:
        self.cats: list[npt.NDArray[np.float64] | None] = []
        self.qs: list[npt.NDArray[np.float64]] = []
        self.mu = np.nanmean(x, axis=0)
        self.sd = np.nanstd(x, axis=0) + 1e-9
        for j in range(x.shape[1]):
            u = np.unique(x[:, j][np.isfinite(x[:, j])])
            self.cats.append(u if len(u) <= MAX_CATEGORIES else None)
            self.qs.append(np.nanquantile(x[:, j], np.linspace(0, 1, 201)))
        return self

    def transform(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        out = []
        for j, cats in enumerate(self.cats):
            col = x[:, j : j + 1]
            if cats is not None:
                out.append((col == cats[None, :]).astype(np.float32))
            else:
                out.append(np.clip((col - self.mu[j]) / self.sd[j], -5, 5).astype(np.float32))
                q = self.qs[j]
                u = np.interp(col, q, np.linspace(0, 1, len(q)))
                u = np.clip(u, 1e-3, 1 - 1e-3)
                z = np.sqrt(2.0) * torch.special.erfinv(torch.from_numpy(2 * u - 1)).numpy()
                out.append(z.astype(np.float32))
        return np.concatenate(out, axis=1)

    def to_json(self) -> str:
        """The fitted statistics (this party's own; kept next to its model half for scoring)."""
        return json.dumps({"format": "bank_fintech.preprocessor/1", "mu": self.mu.tolist(),
                           "sd": self.sd.tolist(), "qs": [q.tolist() for q in self.qs],
                           "cats": [None if c is None else c.tolist() for c in self.cats]})

    @classmethod
    def from_json(cls, text: str, *, source: str = "preprocessor") -> Preprocessor:
        """Read :meth:`to_json` output; ValueError names the file if it is not one."""
        try:
            d = json.loads(text)
            if d.get("format") != "bank_fintech.preprocessor/1":
                raise ValueError("wrong format tag")
            self = cls()
            self.mu = np.asarray(d["mu"], dtype=np.float64)
            self.sd = np.asarray(d["sd"], dtype=np.float64)
            self.qs = [np.asarray(q, dtype=np.float64) for q in d["qs"]]
            self.cats = [None if c is None else np.asarray(c, dtype=np.float64) for c in d["cats"]]
            if not len(self.mu) == len(self.sd) == len(self.qs) == len(self.cats):
                raise ValueError("column counts differ")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{source} is not a saved preprocessor: {e}") from None
        return self

    @property
    def n_columns(self) -> int:
        return len(self.cats)


#: Width of the passive bottom output (d) and of the interactive layer (k). HE cost per
#: step grows with d and k (vfl_he.md); 8 keeps the AUC of 16 on default_credit.
D, K = 8, 8


def bank_model(n_features: int, *, seed: int = 0, d: int = D, k: int = K) -> ActiveHead:
    """Bank: bottom n -> 32 -> d, own linear d -> k, top ReLU -> Linear(k, 1)."""
    return default_active(n_features, hidden=32, d=d, k=k, seed=seed)


def fintech_model(n_features: int, *, seed: int = 1, d: int = D) -> torch.nn.Module:
    """Fintech: bottom n -> 32 -> d."""
    return default_passive(n_features, hidden=32, d=d, seed=seed)


def drop_random_rows(src: str | Path, dst: str | Path, *, fraction: float, seed: int) -> int:
    """Copy a CSV without a random ``fraction`` of its rows (the demo's unaligned inputs)."""
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    keep = np.random.default_rng(seed).random(len(body)) >= fraction
    from party.files import write_atomic

    def w(fh):  # type: ignore[no-untyped-def]
        import io

        s = io.StringIO()
        wr = csv.writer(s, lineterminator="\n")
        wr.writerow(head)
        wr.writerows(r for r, k in zip(body, keep, strict=True) if k)
        fh.write(s.getvalue().encode())

    write_atomic(dst, w)
    return int(keep.sum())


def train_bank_only(x_train: npt.NDArray[np.float32], y_train: npt.NDArray[np.float64],
                    x_test: npt.NDArray[np.float32], *, epochs: int, batch_size: int, lr: float,
                    seed: int, val_fraction: float, patience: int, d: int = D,
                    k: int = K) -> npt.NDArray[np.float64]:
    """The bank alone: the same head with the passive contribution fixed at zero.

    Same split, shuffling and early stopping rule as the federated trainer; returns
    test-set probabilities.
    """
    from torch import nn

    from vfl.split import auc
    from vfl.trainer import split_rows

    model = bank_model(x_train.shape[1], d=d, k=k)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    trn, val = split_rows(len(y_train), val_fraction, seed)
    xa = torch.from_numpy(np.asarray(x_train, dtype=np.float32))
    y = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
    best, best_state, bad = -math.inf, None, 0
    for epoch in range(epochs):
        order = np.random.default_rng([seed, 2, epoch]).permutation(trn)
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(xa[idx], torch.zeros(len(idx), k)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if len(val):  # the trainer's rule (vfl.runner.score_of): validation AUC, else -train loss
            with torch.no_grad():
                a = auc(y[val].numpy(), model(xa[val], torch.zeros(len(val), k)).numpy())
        else:
            a = -float(np.mean(losses))
        if a > best:
            best, best_state, bad = a, {n: v.clone() for n, v in model.state_dict().items()}, 0
        else:
            bad += 1
            if bad > patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    with torch.no_grad():
        logit = model(torch.from_numpy(np.asarray(x_test, dtype=np.float32)),
                      torch.zeros(len(x_test), k))
    return torch.sigmoid(logit).double().numpy()
