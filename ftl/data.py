"""Each party's inputs, their checks, and the credit-default split used by the examples.

A (guest) holds labelled rows, B (host) holds unlabelled rows with other
features. ``overlap`` lists, for each party, its row index of each shared
customer, in the agreed (PSI) order: ``guest.overlap[i]`` and ``host.overlap[i]``
are the same customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from party.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: UCI "default of credit card clients" (columns X1..X23 of the shared CSV). A: credit
#: limit, sex, education, marriage, age and the latest repayment status (X1–X6);
#: B: the five earlier repayment statuses, six bill and six payment amounts (X7–X23).
CREDIT_GUEST_COLUMNS = ["X1", "X2", "X3", "X4", "X5", "X6"]
CREDIT_HOST_COLUMNS = [f"X{i}" for i in range(7, 24)]
CREDIT_FILE = Path("credit_default_taiwan") / "UCI_Credit_Card.csv"


def _check_x(x: FloatArray, who: str) -> FloatArray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ConfigError(f"{who} features must be a non-empty 2-d array, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ConfigError(f"{who} features contain NaN or Inf in {bad} rows")
    return x


def _check_overlap(overlap: IntArray, n_rows: int, who: str) -> IntArray:
    ov = np.asarray(overlap)
    if ov.ndim != 1 or ov.size == 0:
        raise ConfigError(
            f"{who}: no overlap with the other party (0 shared rows); FTL needs shared "
            "customers — run the alignment (python -m vfl.align) first"
        )
    if not np.issubdtype(ov.dtype, np.integer):
        raise ConfigError(f"{who}: overlap must be integer row indices, got {ov.dtype}")
    ov = ov.astype(np.int64)
    if ov.min() < 0 or ov.max() >= n_rows:
        raise ConfigError(f"{who}: overlap row index out of range 0..{n_rows - 1}")
    if np.unique(ov).size != ov.size:
        raise ConfigError(f"{who}: overlap lists a row more than once")
    return ov


@dataclass(frozen=True)
class GuestData:
    """A's rows: features, class labels (0/1, or 0..C−1), and the overlap rows in PSI order."""

    x: FloatArray
    y: FloatArray
    overlap: IntArray

    def __post_init__(self) -> None:
        x = _check_x(self.x, "guest")
        if self.y is None:
            raise ConfigError("labels on the wrong side: the guest (A) must hold the labels")
        y = np.asarray(self.y, dtype=np.float64)
        if y.shape != (x.shape[0],):
            raise ConfigError(
                f"guest labels have shape {y.shape}, expected ({x.shape[0]},): one per row"
            )
        if not (np.isfinite(y).all() and (y == np.round(y)).all() and y.min() >= 0):
            raise ConfigError("guest labels must be class numbers 0, 1, ... (0/1 for binary FTL)")
        if np.unique(y).size < 2:
            raise ConfigError("guest labels hold a single class; FTL needs at least two classes")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "overlap", _check_overlap(self.overlap, x.shape[0], "guest"))


@dataclass(frozen=True)
class HostData:
    """B's rows: features only, and the overlap rows in PSI order."""

    x: FloatArray
    overlap: IntArray

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", _check_x(self.x, "host"))
        object.__setattr__(self, "overlap",
                           _check_overlap(self.overlap, self.x.shape[0], "host"))


def preprocess(x: FloatArray, *, clip: float = 5.0) -> FloatArray:
    """Each party's local scaling: signed log for wide columns, z-score, clip to ±clip."""
    x = np.asarray(x, dtype=np.float64).copy()
    wide = np.abs(x).max(axis=0) > 100
    x[:, wide] = np.sign(x[:, wide]) * np.log1p(np.abs(x[:, wide]))
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return np.clip(x, -clip, clip)


@dataclass(frozen=True)
class CreditSplit:
    """The examples' split: A's table (ID, features, Y), B's table (ID, features), B's truth."""

    guest: pd.DataFrame
    host: pd.DataFrame
    host_truth: pd.DataFrame  # ID, Y for B's rows (held out: evaluation only)
    guest_columns: list[str]
    host_columns: list[str]


def split_credit(csv_path: str | Path, *, overlap_frac: float, n_guest: int = 15000,
                 n_host: int = 10000, seed: int = 0,
                 guest_columns: list[str] | None = None) -> CreditSplit:
    """Split the UCI credit data into A's and B's tables.

    A gets ``n_guest`` random customers with its feature group and the labels; B
    gets ``n_host`` customers with the other features, of which
    ``round(overlap_frac·n_host)`` are also A's customers and the rest are not.
    """
    if not 0 < overlap_frac <= 1:
        raise ConfigError(f"overlap_frac must be in (0, 1], got {overlap_frac}")
    df = pd.read_csv(csv_path)
    if "ID" not in df.columns or "Y" not in df.columns:
        raise ConfigError(f"{csv_path}: expected columns ID, X1..X23, Y")
    gcols = guest_columns or CREDIT_GUEST_COLUMNS
    hcols = [c for c in df.columns if c not in ("ID", "Y", *gcols)]
    n_ov = max(1, round(overlap_frac * n_host))
    if n_guest + n_host - n_ov > len(df):
        raise ConfigError(f"{len(df)} rows cannot hold {n_guest} + {n_host} - {n_ov} customers")
    perm = np.random.default_rng(seed).permutation(len(df))
    g_idx = perm[:n_guest]
    rest = perm[n_guest:]
    h_idx = np.concatenate([g_idx[:n_ov], rest[: n_host - n_ov]])
    h_idx = h_idx[np.random.default_rng(seed + 1).permutation(h_idx.size)]
    guest = df.iloc[g_idx][["ID", *gcols, "Y"]].reset_index(drop=True)
    host = df.iloc[h_idx][["ID", *hcols]].reset_index(drop=True)
    truth = df.iloc[h_idx][["ID", "Y"]].reset_index(drop=True)
    return CreditSplit(guest, host, truth, list(gcols), hcols)


#: FATE's vehicle silhouettes (846 rows, 4 classes; 9 guest and 9 host features, already
#: scaled to [−1, 1]): the multi-class example and test.
VEHICLE_GUEST = Path("fate") / "vehicle_scale_hetero_guest.csv"
VEHICLE_HOST = Path("fate") / "vehicle_scale_hetero_host.csv"


def split_hetero(guest_csv: str | Path, host_csv: str | Path, *, n_guest: int, n_host: int,
                 n_overlap: int, seed: int = 0) -> CreditSplit:
    """Turn one of FATE's vertical splits (same ids, guest ``id,y,x..``, host ``id,x..``)
    into an FTL split: A gets ``n_guest`` customers with the guest features and ``y``, B
    ``n_host`` customers with the host features, ``n_overlap`` of them A's too."""
    g, h = pd.read_csv(guest_csv), pd.read_csv(host_csv)
    if "id" not in g.columns or "y" not in g.columns or "id" not in h.columns:
        raise ConfigError(f"{guest_csv}, {host_csv}: expected FATE columns id, y, x0.. / id, x0..")
    df = g.merge(h, on="id", suffixes=("_a", "_b"))
    gcols = [c + "_a" if c in h.columns else c for c in g.columns if c not in ("id", "y")]
    hcols = [c + "_b" if c in g.columns else c for c in h.columns if c != "id"]
    if not 0 < n_overlap <= min(n_guest, n_host) or n_guest + n_host - n_overlap > len(df):
        raise ConfigError(f"{len(df)} rows cannot hold {n_guest} + {n_host} - {n_overlap} "
                          "customers with a non-empty overlap")
    perm = np.random.default_rng(seed).permutation(len(df))
    g_idx = perm[:n_guest]
    h_idx = np.concatenate([g_idx[:n_overlap], perm[n_guest:n_guest + n_host - n_overlap]])
    h_idx = h_idx[np.random.default_rng(seed + 1).permutation(h_idx.size)]
    guest = df.iloc[g_idx][["id", *gcols, "y"]].reset_index(drop=True)
    host = df.iloc[h_idx][["id", *hcols]].reset_index(drop=True)
    truth = df.iloc[h_idx][["id", "y"]].reset_index(drop=True)
    return CreditSplit(guest, host, truth, gcols, hcols)


def overlap_by_ids(guest_ids: list[str], host_ids: list[str]) -> tuple[IntArray, IntArray]:
    """Plaintext join of two ID lists (tests and benchmarks; parties use PSI)."""
    pos = {v: i for i, v in enumerate(host_ids)}
    g = [i for i, v in enumerate(guest_ids) if v in pos]
    h = [pos[guest_ids[i]] for i in g]
    return np.asarray(g, dtype=np.int64), np.asarray(h, dtype=np.int64)


__all__ = [
    "CREDIT_FILE",
    "CREDIT_GUEST_COLUMNS",
    "CREDIT_HOST_COLUMNS",
    "VEHICLE_GUEST",
    "VEHICLE_HOST",
    "CreditSplit",
    "GuestData",
    "HostData",
    "overlap_by_ids",
    "preprocess",
    "split_credit",
    "split_hetero",
]
