"""Join types: what each party's output holds, built from the intersection alone.

Every PSI protocol (ECDH, RR22, KKRT) gives each learner the same thing: the indices of
its shared keys in the agreed order (identical at every party). The join type only
decides how a party lays out its output from that, locally, with the set sizes every
party already knows (they are in the hello). Two parties, L (the *left* party, default
the first by name) and R; ``s`` shared customers; ``-1`` marks a *placeholder* row (a
customer only the peer holds: all columns empty in ``vfl.align``'s output)::

    join        L's output                          R's output
    inner       shared                              shared
    left        shared, L-only (L's input order)    shared, |L|-s placeholders
    right       shared, |R|-s placeholders          shared, R-only (R's input order)
    full        shared, L-only, |R|-s placeholders  shared, |L|-s placeholders, R-only
    difference  L-only (input order)                R-only (input order)

Row i of L's output and row i of R's output are the same customer for inner, left,
right and full (a placeholder stands opposite the peer's only-own row); difference
outputs are not aligned (nothing is shared).

What each party learns, for every join type and protocol: the intersection (which of
its own rows are shared) and the peer's set size — exactly what an inner join reveals.
A placeholder carries no ID and no value of the peer: the peer's non-shared customers
stay unknown (unlike spu's own left/full joins, which write the peer's keys into the
output). For ``difference`` a party learns its non-shared rows, i.e. the intersection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from party.errors import ConfigError

PLACEHOLDER = -1


def check_join(join: str, parties: Sequence[str], mode: str) -> None:
    """ConfigError unless ``join`` can be laid out for these parties and mode."""
    if join != "inner" and len(parties) != 2:
        raise ConfigError(f"join {join!r} needs exactly two parties, not {len(parties)} "
                          f"({', '.join(sorted(parties))}); n-party runs use join 'inner'")
    if join != "inner" and mode not in ("both", "unbalanced"):
        raise ConfigError(f"join {join!r} needs mode 'both' or 'unbalanced', not {mode!r}")


def join_rows(shared: np.ndarray, own_size: int, peer_size: int, *, join: str,
              is_left: bool) -> np.ndarray:
    """This party's output rows (indices into its keys, -1 = placeholder); see the table above.

    ``shared`` are the indices of its shared keys in the agreed order.
    """
    shared = np.asarray(shared, dtype=np.int64)
    s = len(shared)
    if s > min(own_size, peer_size):
        raise ConfigError(f"{s} shared rows cannot come from sets of {own_size} and {peer_size}")
    if join == "inner":
        return shared
    mask = np.ones(own_size, dtype=bool)
    mask[shared] = False
    only = np.flatnonzero(mask).astype(np.int64)  # own rows not shared, input order
    holes = np.full(peer_size - s, PLACEHOLDER, dtype=np.int64)
    if join == "difference":
        return only
    if join == "left":
        parts = [shared, only] if is_left else [shared, holes]
    elif join == "right":
        parts = [shared, holes] if is_left else [shared, only]
    elif join == "full":
        parts = [shared, only, holes] if is_left else [shared, holes, only]
    else:
        raise ConfigError(f"unknown join {join!r}")
    return np.concatenate(parts)


__all__ = ["PLACEHOLDER", "check_join", "join_rows"]
