"""Hetero SecureBoost (Cheng et al. 2019, arXiv 1901.08755) as two pure state machines.

One active party (labels + features) and one or more passive parties (features only), rows
aligned beforehand (``vfl.align``). XGBoost's second-order boosting; every tree:

1. The active party computes each row's g and h, samples rows (``subsample``), turns g, h
   into fixed-point integers, packs each pair into one plaintext and encrypts it under its
   own HE key (OU by default, ``vfl.boost.crypto``): :class:`TreeStart`.
2. Layer by layer, the active party tells each passive party in which open node every row is
   (:class:`NodeRequest`). The passive party sums the ciphertexts per (node, feature, bin)
   (HEU's bucket kernel; the larger sibling is parent − smaller), merges adjacent bins so that
   each bucket holds at least ``min_rows`` sampled rows, turns them into the encrypted left
   sums of each candidate split, shuffles the candidates and returns them
   (:class:`Histograms`).
3. The active party decrypts, adds its own plaintext candidates, and picks the best split per
   node by XGBoost's gain (λ, γ, min_child_weight). For a passive party's split it sends only
   the candidate's index (:class:`SplitRequest`); the owner maps it to (feature, bin), keeps
   that in its lookup table under a fresh record id and returns the id and which of the
   node's rows go left (:class:`SplitResult`).
4. Leaves get ``-η·G/(H+λ)``. The tree's structure and leaf weights stay with the active
   party, each threshold with its owner (FATE's lookup-table model). Each party checkpoints
   after every complete tree (:class:`TreeEnd`), so a run resumes from the last complete tree.

Prediction (:meth:`ActiveBooster.predict`): every passive party evaluates *its own* records
on its rows and returns one "goes left" bit per (record, row) (:class:`PredictBits`); the
active party walks the trees. Neither learns the other's thresholds.

Who learns what (semi-honest parties; tested in ``tests/vfl/boost/test_transcripts.py``):

* **A passive party** receives only ciphertexts of g and h (it holds no key), the sampled
  row indices, the node position of every row at each layer in which its features compete,
  the index of its own chosen candidates, and the record ids its finished trees use. So it
  learns (a) the *instance space* of those nodes: which rows travel together, and hence
  through any of the other parties' splits above them, how the active party's (or another
  passive party's) features partition the rows, and (b) where in its own features the best
  splits are, which depends on the labels. It never learns a label, g, h, leaf weight,
  another party's threshold or feature, or the tree structure beyond its own nodes.
* **Mitigation** (FATE's layered and mix modes, ``BoostParams.mode``):
  ``layered``: the top ``passive_depth`` layers of a tree use one passive party's features
  only (round robin over passive parties), the layers below the active party's only; a
  passive party is sent node positions only at its own layers, where every node is the
  product of its *own* splits, so the instance space tells it nothing it did not know.
  ``mix``: each tree uses one party's features only (the parties take turns), with the same
  effect for whole trees. What remains in both: (b) above (its chosen splits reveal where the
  label signal lies in its features), the sampled rows, and at the active party (c) below.
  The passive party's features are deliberately on top: with the active party's features on
  top, a passive node's rows would reveal the active party's partition to the passive party.
* **The active party** learns, for every decrypted sum, a (ΣG, ΣH) over at least
  ``min_rows`` sampled rows (the passive party merges bins, every candidate split leaves at
  least ``min_rows`` rows on each side, and candidate order is shuffled, so it learns neither
  bin boundaries nor which feature a candidate belongs to, nor the bin counts; it does learn
  how many candidates each node has). It learns
  (c) which rows go left at each passive split it chose (needed to grow the tree), and at
  prediction the left bits of every passive record for every scored row. It never learns a
  passive feature value, name (beyond the count a party declares), or threshold. Since the
  active party knows every row's g, a small ``min_rows`` lets it match sums to row sets;
  choose ``min_rows`` (e.g. 20-50) against that, at a small cost in accuracy.
* **Nothing** else crosses: no party ever decrypts anything from another party except the
  active party its own ciphertexts. A model export in plaintext (``vfl.boost.export``) needs
  an explicit consent flag at every party.

The machines do no I/O: :class:`PassiveBooster` (``vfl.boost.passive``) maps each message to its
reply; :class:`ActiveBooster` (``vfl.boost.active``) drives; both derive the same schedule from
the plan (``vfl.boost.schedule``). This module keeps the argument and the names; for example
:meth:`ActiveBooster.train` is a generator that yields :class:`Exchange` (messages to send,
parties whose reply to wait for) and is sent the replies. ``vfl.boost.runner`` moves them over
a :class:`party.Transport`.
"""


from __future__ import annotations

from collections.abc import Generator
from typing import Any

from vfl.boost.active import ActiveBooster, ActiveModel
from vfl.boost.passive import PassiveBooster
from vfl.boost.schedule import (
    SUB_ROWS_PER_BIN,
    Bins,
    Exchange,
    candidate_cuts,
    colsample,
    feature_owners,
    subsample,
)

__all__ = ["SUB_ROWS_PER_BIN", "ActiveBooster", "ActiveModel", "Bins", "Exchange", "PassiveBooster",
           "candidate_cuts", "colsample", "drive", "feature_owners", "subsample"]


def drive(gen: Generator[Exchange, dict[str, Any], Any], passives: dict[str, PassiveBooster]) -> Any:
    """Run an active generator against in-process passive machines (no network; tests)."""
    try:
        ex = next(gen)
        while True:
            replies = {}
            for dst, msg in ex.sends.items():
                r = passives[dst].handle(msg)
                if dst in ex.expect:
                    replies[dst] = r
            ex = gen.send(replies)
    except StopIteration as e:
        return e.value
