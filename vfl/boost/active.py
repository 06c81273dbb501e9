"""The active party's SecureBoost machine (no I/O): labels, its own bins, the key; ``train()``
and ``predict()`` are generators of :class:`~vfl.boost.schedule.Exchange`. Who learns what:
``vfl.boost.protocol``."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from vfl.boost import messages as wire
from vfl.boost.crypto import Cipher, pack_shift, quantize
from vfl.boost.params import BoostParams
from vfl.boost.schedule import (
    Bins,
    Exchange,
    candidate_cuts,
    checked_replies,
    colsample,
    feature_owners,
    subsample,
)
from vfl.boost.tree import (
    Node,
    base_margin,
    best_candidate,
    check_labels,
    grad_hess,
    leaf_weight,
    sigmoid,
)

log = logging.getLogger(__name__)


@dataclass
class ActiveModel:
    """The active party's half: trees (structure, owners, leaves) and its own lookup table."""

    params: BoostParams
    base: float
    trees: list[list[Node]] = field(default_factory=list)
    table: dict[int, tuple[int, int]] = field(default_factory=dict)  # own record -> (feature, bin)
    passives: list[str] = field(default_factory=list)
    run_id: str = ""
    leaf_rows: list[npt.NDArray[np.int16]] = field(default_factory=list)  # training rows' leaf per tree (resume)
    tree_seconds: list[float] = field(default_factory=list)  # this run's wall time per tree (not saved)

    def used_records(self, owner: str, tree: int | None = None) -> list[int]:
        ts = self.trees if tree is None else [self.trees[tree]]
        return sorted({n.record for t in ts for n in t if n.owner == owner})


class ActiveBooster:
    """The active party: labels, its own bins, the key; ``train()`` is the protocol generator."""

    def __init__(self, bins: Bins, y: Any, passives: list[str], params: BoostParams, cipher: Cipher, *,
                 name: str = "active", model: ActiveModel | None = None,
                 on_tree_end: Callable[[ActiveModel], None] | None = None) -> None:
        if bins.ndim != 2 or bins.dtype != np.int8:
            raise ConfigError(f"active bins must be a 2-D int8 table, got {bins.dtype} {bins.shape}")
        if not passives:
            raise ConfigError("SecureBoost needs at least one passive party")
        self.bins = np.ascontiguousarray(bins)
        self.y = check_labels(y, params.objective)
        if len(self.y) != len(self.bins):
            raise ConfigError(f"{len(self.y)} labels for {len(self.bins)} rows")
        self.name, self.passives, self.p, self.cipher = name, list(passives), params, cipher
        self.n_bins = int(self.bins.max(initial=0)) + 1
        if self.n_bins > params.max_bin:
            raise ConfigError(f"active bins exceed max_bin={params.max_bin}")
        self.model = model or ActiveModel(params, base_margin(self.y, params), passives=list(passives))
        self.on_tree_end = on_tree_end
        self.tree_seconds: list[float] = []  # wall time of each tree (both parties' work, for benchmarks)
        self.passive_split_sizes: list[int] = []  # sampled rows on each side of every passive split

    # ---------------------------------------------------------------- train
    def train(self) -> Generator[Exchange, dict[str, Any], ActiveModel]:
        p, m = self.p, self.model
        n = len(self.y)
        plan = wire.BoostPlan(p.to_dict(), self.cipher.scheme, self.cipher.public_bytes(), n, self.passives,
                         len(m.trees))
        acks = yield Exchange(dict.fromkeys(self.passives, plan), list(self.passives))
        ok = checked_replies(acks, self.passives, wire.PlanAck, "refused the plan")
        resume = min([len(m.trees)] + [ok[q].done_trees for q in self.passives])
        if resume < len(m.trees):
            log.info("%s: resuming from tree %d (a peer's checkpoint is older)", self.name, resume)
            m.trees = m.trees[:resume]
            m.leaf_rows = m.leaf_rows[:resume]
            used = set(m.used_records(self.name))
            m.table = {r: v for r, v in m.table.items() if r in used}
        if len(m.leaf_rows) != len(m.trees) or any(len(lr) != n for lr in m.leaf_rows):
            raise ConfigError("the checkpoint does not hold this table's training rows")
        margin = np.full(n, m.base)
        for tr, lr in zip(m.trees, m.leaf_rows, strict=True):
            margin = margin + np.array([nd.weight for nd in tr])[lr]
        for t in range(resume, p.n_trees):
            t0 = time.perf_counter()
            tree, leaf_of = yield from self._grow(t, margin)
            m.trees.append(tree)
            m.leaf_rows.append(np.asarray(leaf_of, dtype=np.int16))
            margin = margin + np.array([nd.weight for nd in tree])[m.leaf_rows[-1]]
            ends = {q: wire.TreeEnd(t, m.used_records(q, t)) for q in self.passives}
            acks = yield Exchange(ends, list(self.passives))
            for q in self.passives:
                _expect_ack(acks[q], "tree_end", q)
            self.tree_seconds.append(time.perf_counter() - t0)
            log.info("%s: tree %d of %d in %.1f s", self.name, t + 1, p.n_trees, self.tree_seconds[-1])
            if self.on_tree_end is not None:
                self.on_tree_end(m)
        m.run_id = m.run_id or secrets.token_hex(8)
        fins = {}
        for q in self.passives:
            gain: dict[str, float] = {}
            cnt: dict[str, int] = {}
            for tr in m.trees:
                for nd in tr:
                    if nd.owner == q:
                        gain[str(nd.record)] = gain.get(str(nd.record), 0.0) + nd.gain
                        cnt[str(nd.record)] = cnt.get(str(nd.record), 0) + 1
            fins[q] = wire.Finish(m.run_id, gain, cnt)
        acks = yield Exchange(fins, list(self.passives))
        for q in self.passives:
            _expect_ack(acks[q], "finish", q)
        if self.on_tree_end is not None:
            self.on_tree_end(m)
        return m

    def _grow(self, t: int, margin: npt.NDArray[np.float64]) -> Generator[Exchange, dict[str, Any], tuple[list[Node], list[int]]]:
        p, n = self.p, len(self.y)
        g, h = grad_hess(self.y, margin, p.objective)
        rows = subsample(n, p.subsample, p.seed, t)
        gq_s, hq_s, frac = quantize(g[rows], h[rows])
        scale = float(1 << frac)
        gq = np.zeros(n, dtype=np.int64)
        hq = np.zeros(n, dtype=np.int64)
        gq[rows], hq[rows] = gq_s, hq_s
        sampled = np.zeros(n, dtype=bool)
        sampled[rows] = True
        in_tree = [q for q in self.passives
                   if any(q in feature_owners(p, t, d, self.name, self.passives) for d in range(p.max_depth))]
        first_active = next((d for d in range(p.max_depth)
                             if feature_owners(p, t, d, self.name, self.passives) == [self.name]), p.max_depth)
        shift = pack_shift(hq_s)
        blob = self.cipher.encrypt(gq_s, hq_s, shift) if in_tree else b""
        starts = {q: wire.TreeStart(t, rows if q in in_tree else np.zeros(0, np.int64), blob if q in in_tree else b"",
                               shift, first_active) for q in self.passives}
        yield Exchange(starts, [])
        own_feats = colsample(self.bins.shape[1], p.colsample_bytree, p.seed, t, 0)
        nodes: list[Node] = [Node(0)]
        position = np.zeros(n, dtype=np.int32)  # node of every training row
        frontier = [0]
        pairs: list[list[int]] = []
        for depth in range(p.max_depth):
            if not frontier:
                break
            owners = feature_owners(p, t, depth, self.name, self.passives)
            open_pos = np.where(np.isin(position, frontier), position, -1).astype(np.int32)
            totals = {}
            for nid in frontier:
                sel = (position == nid) & sampled
                totals[nid] = (float(gq[sel].sum()), float(hq[sel].sum()))
            # candidates per node: (gl_q, hl_q, owner, ref)
            cands: dict[int, list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], str, list[Any]]]] = {
                nid: [] for nid in frontier}
            if self.name in owners:
                for nid in frontier:
                    sel = np.flatnonzero((position == nid) & sampled)
                    gl_l, hl_l, refs = [], [], []
                    for f in own_feats:
                        col = self.bins[sel, f]
                        cnt = np.bincount(col, minlength=self.n_bins)
                        cuts = candidate_cuts(cnt, p.min_rows)
                        if not cuts:
                            continue
                        cg = np.cumsum(np.bincount(col, weights=gq[sel].astype(np.float64), minlength=self.n_bins))
                        ch = np.cumsum(np.bincount(col, weights=hq[sel].astype(np.float64), minlength=self.n_bins))
                        gl_l.append(cg[cuts])
                        hl_l.append(ch[cuts])
                        refs += [(int(f), b) for b in cuts]
                    if refs:
                        cands[nid].append((np.concatenate(gl_l), np.concatenate(hl_l), self.name, refs))
            asked = [q for q in owners if q != self.name]
            if asked:
                req = wire.NodeRequest(t, depth, list(frontier), open_pos, pairs)
                hists = yield Exchange(dict.fromkeys(asked, req), asked)
                for q in asked:
                    hm = hists[q]
                    if not isinstance(hm, wire.Histograms) or list(hm.nodes) != list(frontier):
                        raise RemoteProtocolError("histograms for other nodes than asked", peer=q)
                    for nid, blob_n, cnt_n in zip(hm.nodes, hm.sums, hm.counts, strict=True):
                        if not blob_n:
                            continue
                        gl_i, hl_i = self.cipher.decrypt_sums(blob_n, shift)
                        if len(gl_i) != cnt_n:
                            raise RemoteProtocolError(f"{len(gl_i)} sums for {cnt_n} candidates", peer=q)
                        cands[nid].append((np.array(gl_i, dtype=np.float64), np.array(hl_i, dtype=np.float64),
                                           q, list(range(cnt_n))))
            # best split per node (candidate order: active first, then passives in order)
            choice: dict[int, tuple[str, Any, float]] = {}
            for nid in frontier:
                gs, hs = totals[nid]
                best: tuple[float, str, Any] | None = None
                for gl, hl, owner, refs in cands[nid]:
                    i, gain = best_candidate(gl / scale, hl / scale, gs / scale, hs / scale, p)
                    if i >= 0 and (best is None or gain > best[0]):
                        best = (gain, owner, refs[i])
                nodes[nid].cover, nodes[nid].grad = hs / scale, gs / scale
                if best is not None:
                    choice[nid] = (best[1], best[2], best[0])
            # passive splits: ask the owners
            lefts: dict[int, tuple[int, npt.NDArray[np.bool_]]] = {}
            req_by: dict[str, tuple[list[int], list[int]]] = {}
            for nid, (owner, ref, _) in choice.items():
                if owner == self.name:
                    f, b = ref
                    rid = max(self.model.table, default=-1) + 1
                    self.model.table[rid] = (f, b)
                    lefts[nid] = (rid, self.bins[position == nid, f] <= b)
                else:
                    req_by.setdefault(owner, ([], []))
                    req_by[owner][0].append(nid)
                    req_by[owner][1].append(int(ref))
            if req_by:
                res = yield Exchange({q: wire.SplitRequest(t, nl, cl) for q, (nl, cl) in req_by.items()}, list(req_by))
                for q, (nl, _) in req_by.items():
                    r = res[q]
                    if not isinstance(r, wire.SplitResult) or len(r.records) != len(nl):
                        raise RemoteProtocolError("split result does not match the request", peer=q)
                    for nid, rid, lm in zip(nl, r.records, r.left, strict=True):
                        lm = np.asarray(lm, dtype=bool)
                        if len(lm) != int((position == nid).sum()):
                            raise RemoteProtocolError(f"left mask of {len(lm)} rows for node {nid}", peer=q)
                        lefts[nid] = (int(rid), lm)
            nxt: list[int] = []
            pairs = []
            for nid in frontier:
                if nid not in lefts:
                    continue
                owner, _, gain = choice[nid]
                rid, lm = lefts[nid]
                idx = np.flatnonzero(position == nid)
                nsl = int((lm & sampled[idx]).sum())
                nsr = int((~lm & sampled[idx]).sum())
                if owner != self.name:
                    self.passive_split_sizes += [nsl, nsr]
                li, ri = len(nodes), len(nodes) + 1
                nodes += [Node(depth + 1), Node(depth + 1)]
                nd = nodes[nid]
                nd.owner, nd.record, nd.left, nd.right, nd.gain = owner, rid, li, ri, gain
                position[idx[lm]] = li
                position[idx[~lm]] = ri
                nxt += [li, ri]
                pairs.append([nid, li, ri])
            frontier = nxt
        # leaves
        for i, nd in enumerate(nodes):
            if nd.is_leaf:
                sel = (position == i) & sampled
                gs, hs = float(gq[sel].sum()) / scale, float(hq[sel].sum()) / scale
                nd.cover, nd.grad = hs, gs
                nd.weight = leaf_weight(gs, hs, p)
        return nodes, position.tolist()

    # -------------------------------------------------------------- predict
    def _tree_values(self, tree: list[Node], bins: Bins, bits: dict[tuple[str, int], npt.NDArray[np.bool_]] | None,
                     ) -> npt.NDArray[np.float64]:
        n = len(bins)
        pos = np.zeros(n, dtype=np.int64)
        for _ in range(self.p.max_depth + 1):
            moved = False
            for i, nd in enumerate(tree):
                if nd.is_leaf:
                    continue
                at = pos == i
                if not at.any():
                    continue
                if nd.owner == self.name:
                    f, b = self.model.table[nd.record]
                    go_left = bins[:, f] <= b
                else:
                    if bits is None:
                        raise LocalProtocolError("a passive split needs the owner's bits")
                    go_left = bits[(nd.owner, nd.record)]
                pos = np.where(at & go_left, nd.left, np.where(at, nd.right, pos))
                moved = True
            if not moved:
                break
        return np.array([tree[i].weight for i in pos])

    def predict(self, bins: Bins) -> Generator[Exchange, dict[str, Any], npt.NDArray[np.float64]]:
        """Scores (probabilities for binary:logistic) of ``bins`` rows, aligned with the passive parties' rows."""
        m = self.model
        n = len(bins)
        reqs = {q: wire.PredictRequest(m.run_id, n, m.used_records(q)) for q in m.passives}
        replies = yield Exchange(reqs, list(m.passives))
        bits: dict[tuple[str, int], npt.NDArray[np.bool_]] = {}
        for q, r in checked_replies(replies, m.passives, wire.PredictBits, "cannot score").items():
            if list(r.records) != reqs[q].records:
                raise RemoteProtocolError("bits for other records than asked", peer=q)
            if r.records:
                un = np.unpackbits(np.asarray(r.bits, dtype=np.uint8), axis=1, count=n).astype(bool)
                if un.shape != (len(r.records), n):
                    raise RemoteProtocolError(f"bits of shape {un.shape}", peer=q)
                for i, rid in enumerate(r.records):
                    bits[(q, rid)] = un[i]
        margin = np.full(n, m.base)
        for tr in m.trees:
            margin = margin + self._tree_values(tr, bins, bits)
        return sigmoid(margin) if m.params.objective == "binary:logistic" else margin

    def export(self, consent: bool) -> Generator[Exchange, dict[str, Any], dict[str, wire.ExportTable]]:
        """Ask every passive party for its thresholds (each must consent); returns their tables."""
        m = self.model
        req = wire.ExportRequest(m.run_id, consent)
        replies = yield Exchange(dict.fromkeys(m.passives, req), list(m.passives))
        return checked_replies(replies, m.passives, wire.ExportTable, "refused the export")


def _expect_ack(a: Any, step: str, q: str) -> None:
    if not isinstance(a, wire.Ack) or a.step != step:
        raise RemoteProtocolError(f"expected Ack({step}), got {a!r}", peer=q)
    if a.error:
        raise RemoteProtocolError(f"{q} failed at {step}: {a.error}", peer=q)

