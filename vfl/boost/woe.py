"""Federated WOE/IV binning: every party learns the WOE and IV of its own features only.

The active party (labels) computes its own table in plaintext (:func:`woe_table`). For a
passive party's features:

1. A → P: the labels encrypted under A's key, one ciphertext per row (:class:`WoeLabels`).
2. P sums them per (feature, bin) with HEU's bucket kernel: the encrypted event count of
   each bin. It adds a fresh random mask ``r`` (80 bits above the largest count) to each and
   returns them (:class:`WoeMasked`).
3. A decrypts and returns the masked counts (:class:`WoeOpened`); P removes its masks and
   has the event count per bin, hence the WOE/IV table of its features (:class:`WoeSummary`
   back to A holds the per-feature IV only if P chose ``share_iv``).

Who learns what: A learns nothing about P's features (masked counts are statistically
uniform, 2^-60 distinguishing advantage); not the number of bins per feature either beyond
their total. P learns, per bin of its own features, how many rows have label 1, which is
exactly what a WOE table states (WOE with the bin's row count gives the event count back);
it learns no row's label as long as every bin holds at least ``min_bin_rows`` rows, which P
enforces by merging adjacent bins before step 2 (semi-honest: A trusts P to merge).
Both learn the total event rate. Categorical features bin one category per bin.
"""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
from collections.abc import Generator
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt

from party import wire
from party.codec import Blob, Int, ListOf, NonNegInt, Text
from party.errors import RemoteProtocolError
from party.files import write_atomic
from vfl.boost.binning import Binner
from vfl.boost.crypto import Cipher, make_summer
from vfl.boost.messages import Floats, Texts, dispatch
from vfl.boost.schedule import Bins, Exchange, checked_replies
from vfl.boost.tree import check_labels

ADJUST = 0.5  # FATE's adjustment_factor for empty event / non-event counts
MASK_BITS = 80


@wire("boost.woe_plan", version=1)
@dataclass(frozen=True)
class WoePlan:
    rows: NonNegInt
    scheme: Text
    public_key: Blob
    min_bin_rows: NonNegInt


@wire("boost.woe_labels", version=1)
@dataclass(frozen=True)
class WoeLabels:
    labels: Blob  # encrypted 0/1 per row


@wire("boost.woe_masked", version=1)
@dataclass(frozen=True)
class WoeMasked:
    counts: Blob  # encrypted event count + mask, per (feature, bin)
    n: NonNegInt
    error: Text = ""


@wire("boost.woe_opened", version=1)
@dataclass(frozen=True)
class WoeOpened:
    values: Annotated[list[int], ListOf(Int())]


@wire("boost.woe_summary", version=1)
@dataclass(frozen=True)
class WoeSummary:
    features: Texts
    iv: Floats  # empty unless the passive party shares its IVs


def merge_small_bins(codes: npt.NDArray[np.int8], n_bins: int, min_rows: int) -> tuple[npt.NDArray[np.int64], list[list[int]]]:
    """Merge adjacent bins until each holds >= ``min_rows`` rows; returns new codes and groups of old bins."""
    counts = np.bincount(codes.astype(np.int64), minlength=n_bins)
    groups: list[list[int]] = []
    cur: list[int] = []
    acc = 0
    for b in range(n_bins):
        cur.append(b)
        acc += int(counts[b])
        if acc >= min_rows:
            groups.append(cur)
            cur, acc = [], 0
    if cur:
        if groups:
            groups[-1] += cur
        else:
            groups.append(cur)
    new = np.zeros(n_bins, dtype=np.int64)
    for i, g in enumerate(groups):
        new[g] = i
    return new[codes.astype(np.int64)], groups


def _rows_for(binner: Binner, f: int, groups: list[list[int]], events: list[int], counts: list[int],
              tot_e: int, tot_n: int) -> list[dict[str, Any]]:
    fb = binner.features[f]
    out: list[dict[str, Any]] = []
    iv = 0.0
    for grp, e, c in zip(groups, events, counts, strict=True):
        ne = c - e
        er = (e if e > 0 else ADJUST) / max(tot_e, 1)
        nr = (ne if ne > 0 else ADJUST) / max(tot_n, 1)
        woe = math.log(er / nr)
        part = (er - nr) * woe
        iv += part
        rng = fb.describe(grp[0]) if len(grp) == 1 else (
            f"[{fb.describe(grp[0]).split(',')[0][1:]}, {fb.describe(grp[-1]).split(', ')[1]}"
            if fb.kind == "numeric" else "{" + ", ".join(fb.describe(b) for b in grp) + "}")
        out.append({"feature": fb.name, "kind": fb.kind, "bin": len(out), "range": rng, "count": c, "events": e,
                    "non_events": ne, "event_rate": e / c if c else 0.0, "woe": woe, "iv_part": part})
    for r in out:
        r["iv"] = iv
    return out


def woe_table(bins: Bins, binner: Binner, y: Any, *, min_bin_rows: int = 50) -> list[dict[str, Any]]:
    """The WOE/IV table of the label holder's own features (plaintext)."""
    y = check_labels(y, "binary:logistic").astype(np.int64)
    tot_e = int(y.sum())
    tot_n = len(y) - tot_e
    rows: list[dict[str, Any]] = []
    for f, fb in enumerate(binner.features):
        codes, groups = merge_small_bins(bins[:, f], fb.n_bins, min_bin_rows)
        k = len(groups)
        ev = np.bincount(codes, weights=y, minlength=k).astype(np.int64).tolist()
        cn = np.bincount(codes, minlength=k).tolist()
        rows += _rows_for(binner, f, groups, ev, cn, tot_e, tot_n)
    return rows


def iv_by_feature(table: list[dict[str, Any]]) -> dict[str, float]:
    return {r["feature"]: float(r["iv"]) for r in table}


def write_table(table: list[dict[str, Any]], path_stem: str) -> None:
    """``<stem>.csv`` and ``<stem>.json``, atomically."""
    buf = io.StringIO()
    cols = ["feature", "kind", "bin", "range", "count", "events", "non_events", "event_rate", "woe", "iv_part", "iv"]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in table:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_atomic(f"{path_stem}.csv", buf.getvalue())
    write_atomic(f"{path_stem}.json", json.dumps(table, indent=1))


# ------------------------------------------------------------------ the protocol


def woe_active(y: Any, passives: list[str], cipher: Cipher, *, min_bin_rows: int = 50,
               ) -> Generator[Exchange, dict[str, Any], dict[str, dict[str, float]]]:
    """The label holder's side; returns each passive party's shared IVs (empty if not shared)."""
    ya = check_labels(y, "binary:logistic").astype(np.int64)
    plan = WoePlan(len(ya), cipher.scheme, cipher.public_bytes(), min_bin_rows)
    yield Exchange(dict.fromkeys(passives, plan), [])
    enc = cipher.encrypt_ints(ya)  # type: ignore[attr-defined]
    masked = yield Exchange(dict.fromkeys(passives, WoeLabels(enc)), list(passives))
    opened = {}
    for q, m in checked_replies(masked, list(passives), WoeMasked, "refused the WOE run").items():
        vals = cipher.decrypt_ints(m.counts)  # type: ignore[attr-defined]
        if len(vals) != m.n:
            raise RemoteProtocolError(f"{len(vals)} masked counts, {m.n} announced", peer=q)
        opened[q] = WoeOpened(vals)
    summaries = yield Exchange(opened, list(passives))
    out = {}
    for q in passives:
        s = summaries[q]
        if not isinstance(s, WoeSummary):
            raise RemoteProtocolError(f"expected WoeSummary, got {type(s).__name__}", peer=q)
        out[q] = dict(zip(s.features, s.iv, strict=False))
    return out


class WoePassive:
    """A passive party's side of the WOE/IV run; ``table`` holds its result."""

    def __init__(self, bins: Bins, binner: Binner, *, share_iv: bool = False, min_bin_rows_floor: int = 1) -> None:
        self.bins, self.binner, self.share_iv = bins, binner, share_iv
        self.min_bin_rows_floor = min_bin_rows_floor
        self.table: list[dict[str, Any]] = []
        self._plan: WoePlan | None = None
        self._groups: list[list[list[int]]] = []
        self._masks: list[int] = []
        self._counts: list[list[int]] = []

    def handle(self, msg: Any) -> Any:
        if isinstance(msg, WoePlan):
            self._plan = msg
            return None
        if self._plan is None:
            raise RemoteProtocolError(f"{type(msg).__name__} before the WOE plan")
        return dispatch(msg, {WoeLabels: self._masked, WoeOpened: self._finish})

    def _masked(self, msg: WoeLabels) -> WoeMasked:
        p = self._plan
        assert p is not None
        if p.rows != len(self.bins):
            return WoeMasked(b"", 0, f"{len(self.bins)} rows here, {p.rows} at the label holder")
        k = max(p.min_bin_rows, self.min_bin_rows_floor)
        codes = np.zeros(self.bins.shape, dtype=np.int8)
        self._groups, self._counts = [], []
        for f, fb in enumerate(self.binner.features):
            c, groups = merge_small_bins(self.bins[:, f], fb.n_bins, k)
            codes[:, f] = c
            self._groups.append(groups)
            self._counts.append(np.bincount(c, minlength=len(groups)).tolist())
        nb = max((len(g) for g in self._groups), default=1)
        summer = make_summer(p.scheme, p.public_key)
        ct = summer.load(msg.labels)
        hist = summer.bucket_sums(ct, [np.ones(len(self.bins), dtype=np.int8)], codes, nb)[0]
        idx = [f * nb + b for f, g in enumerate(self._groups) for b in range(len(g))]
        sel = summer.select_sums(hist, [[i] for i in idx])
        bound = len(self.bins).bit_length() + MASK_BITS
        self._masks = [secrets.randbits(bound) for _ in idx]
        blob = summer.add_masks(summer.load(sel), self._masks)  # type: ignore[attr-defined]
        return WoeMasked(blob, len(idx))

    def _finish(self, msg: WoeOpened) -> WoeSummary:
        if len(msg.values) != len(self._masks):
            raise RemoteProtocolError(f"{len(msg.values)} opened counts for {len(self._masks)} bins")
        events = [v - r for v, r in zip(msg.values, self._masks, strict=True)]
        n = len(self.bins)
        if any(e < 0 or e > n for e in events):
            raise RemoteProtocolError("opened counts are not event counts (wrong key or a forged reply)")
        tot_e = sum(events[: len(self._groups[0])]) if self._groups else 0
        rows: list[dict[str, Any]] = []
        i = 0
        for f, groups in enumerate(self._groups):
            ev = events[i:i + len(groups)]
            i += len(groups)
            rows += _rows_for(self.binner, f, groups, ev, self._counts[f], tot_e, n - tot_e)
        self.table = rows
        ivs = iv_by_feature(rows)
        return WoeSummary(list(ivs), list(ivs.values()) if self.share_iv else [])


# --------------------------------------------------------------------- runners


def run_woe_active(party: Any, passives: list[str], y: Any, *, scheme: str = "ou", key_bits: int = 2048,
                   min_bin_rows: int = 50, session: str = "boost-woe", timeout_s: float = 600.0,
                   ) -> dict[str, dict[str, float]]:
    """The label holder's WOE/IV run over a Party; returns the IVs the passive parties shared."""
    from vfl.boost.crypto import make_cipher
    from vfl.boost.runner import _drive_active, _open

    cipher = make_cipher(scheme, key_bits)
    _open(party, list(passives), session, {"role": "boost-woe"}, timeout_s)
    return _drive_active(party, woe_active(y, passives, cipher, min_bin_rows=min_bin_rows), session, timeout_s)  # type: ignore[no-any-return]


def run_woe_passive(party: Any, active: str, bins: Bins, binner: Binner, *, share_iv: bool = False,
                    min_bin_rows_floor: int = 1, session: str = "boost-woe", timeout_s: float = 600.0,
                    ) -> list[dict[str, Any]]:
    """A passive party's WOE/IV run; returns the WOE/IV table of its own features."""
    from vfl.boost.runner import _open, _serve_passive

    w = WoePassive(bins, binner, share_iv=share_iv, min_bin_rows_floor=min_bin_rows_floor)
    _open(party, [active], session, {"role": "boost-woe"}, timeout_s)
    _serve_passive(party, active, w, session, timeout_s, WoeOpened)  # type: ignore[arg-type]
    return w.table
