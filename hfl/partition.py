"""Split a data set across clients: IID, McMahan's pathological shards, Dirichlet(α) label skew.

Every function returns one index array per client (sorted), from a seeded RNG.
"""

from __future__ import annotations

import numpy as np


def iid(num_examples: int, num_clients: int, *, seed: int = 0) -> list[np.ndarray]:
    """Shuffle and cut into ``num_clients`` near-equal parts."""
    if num_clients < 1 or num_examples < num_clients:
        raise ValueError(f"cannot split {num_examples} examples over {num_clients} clients")
    perm = np.random.default_rng(seed).permutation(num_examples)
    return [np.sort(p) for p in np.array_split(perm, num_clients)]


def pathological_non_iid(labels: np.ndarray, num_clients: int, *, shards_per_client: int = 2,
                         seed: int = 0) -> list[np.ndarray]:
    """McMahan et al. (2017): sort by label, cut into ``num_clients × shards_per_client``
    equal shards, give each client ``shards_per_client`` random shards.

    With MNIST's 60,000 images and 100 clients: 200 shards of 300, most clients
    see only two digits.
    """
    labels = np.asarray(labels)
    n_shards = num_clients * shards_per_client
    if n_shards > len(labels):
        raise ValueError(f"{n_shards} shards for {len(labels)} examples")
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, n_shards)
    pick = np.random.default_rng(seed).permutation(n_shards)
    return [np.sort(np.concatenate([shards[s] for s in
                                    pick[c * shards_per_client:(c + 1) * shards_per_client]]))
            for c in range(num_clients)]


def dirichlet(labels: np.ndarray, num_clients: int, *, alpha: float, seed: int = 0,
              min_size: int = 1, max_tries: int = 100) -> list[np.ndarray]:
    """Label skew: each class is split over clients with proportions ~ Dir(α).

    Small α (0.1) gives clients few classes; large α (100) approaches IID. Draws
    again (up to ``max_tries``) until every client has ``min_size`` examples.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for k in classes:
            idx = rng.permutation(np.flatnonzero(labels == k))
            p = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for c, chunk in enumerate(np.split(idx, cuts)):
                parts[c].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(o) for o in out) >= min_size:
            return out
    raise ValueError(f"no Dirichlet({alpha}) split gave every client {min_size} examples "
                     f"in {max_tries} tries; raise alpha or lower min_size")
