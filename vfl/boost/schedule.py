"""What the SecureBoost machines share: the exchange step, and the schedule both sides derive from
the plan (which parties' features compete at each depth, candidate cuts, row and column samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from party.errors import ConfigError, RemoteProtocolError
from vfl.boost.params import BoostParams

Bins = npt.NDArray[np.int8]
#: Below this many rows per bin in the larger sibling, summing its rows beats parent − smaller
#: (OU subtraction needs a modular inverse per bin: ~1.7 ms against ~3 µs per row addition).
SUB_ROWS_PER_BIN = 600


@dataclass
class Exchange:
    """One step of the active machine: send ``sends[dst]``, then wait for a reply from each of ``expect``."""

    sends: dict[str, Any]
    expect: list[str]


def feature_owners(p: BoostParams, tree: int, depth: int, active: str, passives: list[str]) -> list[str]:
    """The parties whose features compete at ``depth`` of ``tree`` (the privacy mode)."""
    if p.mode == "classic" or not passives:
        return [active, *passives]
    if p.mode == "layered":
        return [passives[tree % len(passives)]] if depth < p.passive_depth else [active]
    parties = [active, *passives]
    return [parties[tree % len(parties)]]


def candidate_cuts(counts: npt.NDArray[np.int64], k: int) -> list[int]:
    """Bins b after which a split may cut: every bucket between cuts and the rest hold >= k rows."""
    cuts: list[int] = []
    since, remaining = 0, int(counts.sum())
    for b in range(len(counts) - 1):
        c = int(counts[b])
        since += c
        remaining -= c
        if c > 0 and since >= k and remaining >= k:
            cuts.append(b)
            since = 0
    return cuts


def colsample(n_features: int, frac: float, seed: int, tree: int, salt: int) -> npt.NDArray[np.int64]:
    if frac >= 1.0 or n_features == 0:
        return np.arange(n_features)
    k = max(1, round(frac * n_features))
    rng = np.random.default_rng([seed, tree, salt, 17])
    return np.sort(rng.choice(n_features, size=k, replace=False))


def subsample(n: int, frac: float, seed: int, tree: int) -> npt.NDArray[np.int64]:
    if frac >= 1.0:
        return np.arange(n)
    rng = np.random.default_rng([seed, tree, 23])
    sel = np.flatnonzero(rng.random(n) < frac)
    return sel if len(sel) else np.arange(n)



class _Reply(Protocol):
    @property
    def error(self) -> str: ...


R = TypeVar("R", bound=_Reply)


def checked_replies(replies: dict[str, Any], parties: list[str], kind: type[R], refused: str) -> dict[str, R]:
    """Each party's reply, checked: of type ``kind`` (else a protocol error naming the party), and
    without an error (else a :class:`ConfigError`: ``"{party} {refused}: {error}"``)."""
    out: dict[str, R] = {}
    for q in parties:
        r = replies[q]
        if not isinstance(r, kind):
            raise RemoteProtocolError(f"expected {kind.__name__}, got {type(r).__name__}", peer=q)
        if r.error:
            raise ConfigError(f"{q} {refused}: {r.error}")
        out[q] = r
    return out
