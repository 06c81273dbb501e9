"""SecAgg+ neighbour graph: a random Harary graph H(k, n) from a shared seed.

The clients are placed on a ring in a pseudo-random order (sorted by
HMAC-SHA256(seed, id)); each is joined to the k/2 clients on either side. The
graph is k-regular and symmetric; with k >= n - 1 it is the complete graph
(SecAgg). The server draws the seed per round and every client recomputes the
graph from it, so a client can check that the server's requests only name
its neighbours. (Google's and Flower's SecAgg+ use the same ring construction.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


def ring_order(ids: Sequence[str], seed: bytes) -> list[str]:
    """The ids in the seed's pseudo-random ring order."""
    return sorted(ids, key=lambda i: hmac.new(seed, i.encode("utf-8"), hashlib.sha256).digest())


def neighbours(ids: Sequence[str], k: int, seed: bytes) -> dict[str, frozenset[str]]:
    """Map each id to its neighbours in H(k, n) (every other id when k >= n - 1)."""
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("duplicate ids in the roster")
    if k >= n - 1:
        everyone = frozenset(ids)
        return {i: everyone - {i} for i in ids}
    if k < 2 or k % 2:
        raise ValueError(f"degree must be an even int >= 2, got {k}")
    ring = ring_order(ids, seed)
    half = k // 2
    out: dict[str, frozenset[str]] = {}
    for pos, i in enumerate(ring):
        out[i] = frozenset(ring[(pos + d) % n] for d in range(-half, half + 1) if d)
    return out
