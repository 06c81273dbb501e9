"""Small synthetic FTL data: both parties' features are noisy views of one latent factor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftl import FtlParams, GuestData, HostData


@dataclass
class Toy:
    guest: GuestData
    host: HostData
    host_y: np.ndarray  # held-out truth for B's rows


def toy(n_guest: int = 200, n_host: int = 100, n_overlap: int = 40, seed: int = 0) -> Toy:
    rng = np.random.default_rng(seed)
    n_total = n_guest + n_host - n_overlap
    z = rng.normal(size=(n_total, 3))
    y = (z @ np.array([1.5, -1.0, 0.5]) + 0.5 * rng.normal(size=n_total) > 0).astype(float)
    xa = z @ rng.normal(size=(3, 5)) + 0.3 * rng.normal(size=(n_total, 5))
    xb = z @ rng.normal(size=(3, 4)) + 0.3 * rng.normal(size=(n_total, 4))
    g_rows = np.arange(n_guest)                       # customers 0..n_guest-1
    h_rows = np.arange(n_guest - n_overlap, n_total)  # the last n_overlap of A's, then new ones
    h_perm = rng.permutation(h_rows.size)
    h_rows = h_rows[h_perm]
    pos = {c: i for i, c in enumerate(h_rows)}
    shared = [c for c in g_rows if c in pos]
    g_ov = np.array(shared, dtype=np.int64)
    h_ov = np.array([pos[c] for c in shared], dtype=np.int64)
    return Toy(GuestData(xa[g_rows], y[g_rows], g_ov), HostData(xb[h_rows], h_ov), y[h_rows])


def small_params(**kw: object) -> FtlParams:
    base: dict[str, object] = {"dim": 4, "guest_hidden": (4,), "epochs": 2, "batch_size": 20,
                                   "source_batch": 64, "lr": 0.05, "timeout_s": 60.0}
    base.update(kw)
    return FtlParams(**base)  # type: ignore[arg-type]
