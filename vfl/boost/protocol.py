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

The machines here do no I/O: :class:`PassiveBooster` maps each message to its reply;
:meth:`ActiveBooster.train` is a generator that yields :class:`Exchange` (messages to send,
parties whose reply to wait for) and is sent the replies. ``vfl.boost.runner`` moves them over
a :class:`party.Transport`.
"""

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
from vfl.boost.crypto import (
    Cipher,
    Summer,
    make_summer,
    pack_shift,
    quantize,
)
from vfl.boost.messages import (
    Ack,
    BoostPlan,
    ExportRequest,
    ExportTable,
    Finish,
    Histograms,
    NodeRequest,
    PlanAck,
    PredictBits,
    PredictRequest,
    SplitRequest,
    SplitResult,
    TreeEnd,
    TreeStart,
)
from vfl.boost.params import BoostParams
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


def _colsample(n_features: int, frac: float, seed: int, tree: int, salt: int) -> npt.NDArray[np.int64]:
    if frac >= 1.0 or n_features == 0:
        return np.arange(n_features)
    k = max(1, round(frac * n_features))
    rng = np.random.default_rng([seed, tree, salt, 17])
    return np.sort(rng.choice(n_features, size=k, replace=False))


def _subsample(n: int, frac: float, seed: int, tree: int) -> npt.NDArray[np.int64]:
    if frac >= 1.0:
        return np.arange(n)
    rng = np.random.default_rng([seed, tree, 23])
    sel = np.flatnonzero(rng.random(n) < frac)
    return sel if len(sel) else np.arange(n)


# ===================================================================== passive


class PassiveBooster:
    """A passive party: its bin codes, its lookup table; maps each message to its reply."""

    def __init__(self, bins: Bins, *, name: str = "passive", salt: int = 1,
                 table: dict[int, tuple[int, int, int]] | None = None, done_trees: int = 0,
                 shuffle_seed: int | None = None, export_consent: bool = False, binner: Any = None,
                 min_rows_floor: int = 1,
                 on_tree_end: Callable[[PassiveBooster], None] | None = None) -> None:
        if bins.ndim != 2 or bins.dtype != np.int8:
            raise ConfigError(f"passive bins must be a 2-D int8 table, got {bins.dtype} {bins.shape}")
        self.bins = np.ascontiguousarray(bins)
        self.name = name
        self.salt = salt
        self.n_bins = int(self.bins.max(initial=0)) + 1
        self.table: dict[int, tuple[int, int, int]] = dict(table or {})  # record -> (feature, bin, tree)
        self.done_trees = done_trees
        self.export_consent = export_consent
        self.binner = binner
        self.min_rows_floor = min_rows_floor
        self.sum_sizes: list[tuple[int, int]] = []  # (left, right) sampled rows of every sum sent
        self.on_tree_end = on_tree_end
        self.run_id = ""
        self.record_gain: dict[int, float] = {}
        self.record_count: dict[int, int] = {}
        self._rng = np.random.default_rng(shuffle_seed if shuffle_seed is not None else secrets.randbits(64))
        self._params: BoostParams | None = None
        self._summer: Summer | None = None
        self._tree = -1
        self._rows: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._ct: Any = None
        self._features: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._hist: dict[int, Any] = {}
        self._counts: dict[int, npt.NDArray[np.int64]] = {}
        self._cands: dict[int, list[tuple[int, int]]] = {}
        self._position: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.received: list[Any] = []  # the transcript (what this party saw), for tests and audits

    @property
    def next_record(self) -> int:
        return max(self.table, default=-1) + 1

    def handle(self, msg: Any) -> Any:
        """The reply to ``msg`` (``None``: none is due)."""
        self.received.append(msg)
        if isinstance(msg, BoostPlan):
            return self._plan(msg)
        if self._params is None and not isinstance(msg, (PredictRequest, ExportRequest)):
            raise LocalProtocolError(f"{type(msg).__name__} before the plan")
        if isinstance(msg, TreeStart):
            return self._tree_start(msg)
        if isinstance(msg, NodeRequest):
            return self._nodes(msg)
        if isinstance(msg, SplitRequest):
            return self._split(msg)
        if isinstance(msg, TreeEnd):
            return self._tree_end(msg)
        if isinstance(msg, Finish):
            self.run_id = msg.run_id
            self.record_gain = {int(k): float(v) for k, v in msg.record_gain.items()}
            self.record_count = {int(k): int(v) for k, v in msg.record_count.items()}
            if self.on_tree_end is not None:
                self.on_tree_end(self)
            return Ack("finish")
        if isinstance(msg, PredictRequest):
            return self.predict_bits(msg)
        if isinstance(msg, ExportRequest):
            return self.export_table(msg)
        raise RemoteProtocolError(f"unexpected message {type(msg).__name__}")

    def _plan(self, m: BoostPlan) -> PlanAck:
        try:
            p = BoostParams.from_dict(m.params)
        except ConfigError as e:
            return PlanAck(len(self.bins), self.done_trees, f"bad plan: {e}")
        if m.rows != len(self.bins):
            return PlanAck(len(self.bins), self.done_trees,
                           f"{self.name} has {len(self.bins)} rows, the active party {m.rows}")
        if p.min_rows < self.min_rows_floor:
            return PlanAck(len(self.bins), self.done_trees,
                           f"{self.name} requires min_rows >= {self.min_rows_floor}, the plan has {p.min_rows}")
        if self.n_bins > p.max_bin:
            return PlanAck(len(self.bins), self.done_trees, f"{self.name}'s bins exceed max_bin={p.max_bin}")
        self._params = p
        self._summer = make_summer(m.scheme, m.public_key)
        return PlanAck(len(self.bins), self.done_trees)

    def _tree_start(self, m: TreeStart) -> None:
        assert self._params is not None
        self.table = {r: v for r, v in self.table.items() if v[2] < m.tree}
        self.done_trees = min(self.done_trees, m.tree)
        self._tree = m.tree
        self._rows = np.asarray(m.rows, dtype=np.int64)
        if len(self._rows) and (self._rows.min() < 0 or self._rows.max() >= len(self.bins)):
            raise RemoteProtocolError("sampled row index out of range")
        self._ct = self._summer.load(m.gh) if (m.gh and self._summer is not None) else None
        self._features = _colsample(self.bins.shape[1], self._params.colsample_bytree,
                                    self._params.seed, m.tree, self.salt)
        self._hist, self._counts, self._cands = {}, {}, {}
        return None

    def _nodes(self, m: NodeRequest) -> Histograms:
        assert self._params is not None and self._summer is not None
        if m.tree != self._tree or self._ct is None:
            raise RemoteProtocolError(f"node request for tree {m.tree} outside its tree")
        pos = np.asarray(m.position, dtype=np.int32)
        if len(pos) != len(self.bins):
            raise RemoteProtocolError(f"node positions for {len(pos)} rows, {self.name} has {len(self.bins)}")
        self._position = pos
        spos = pos[self._rows]  # node of each sampled (encrypted) row
        sbins = self.bins[self._rows][:, self._features]
        nb = self.n_bins
        # histograms: the smaller sibling by bucket sum, the larger as parent - smaller
        direct: list[int] = []
        derived: list[tuple[int, int, int]] = []  # (node, parent, sibling)
        paired = set()
        for parent, lft, rgt in m.pairs:
            if parent in self._hist and lft in m.nodes and rgt in m.nodes:
                small, big = (lft, rgt) if (spos == lft).sum() <= (spos == rgt).sum() else (rgt, lft)
                if self._summer.sub_costly and (spos == big).sum() < SUB_ROWS_PER_BIN * nb:
                    continue  # an HE subtraction (a modular inverse per bin) costs more than the adds
                direct.append(small)
                derived.append((big, parent, small))
                paired |= {lft, rgt}
        direct += [n for n in m.nodes if n not in paired]
        if not len(self._features):  # no columns (none, or none sampled): no candidates anywhere
            self._hist, self._cands = {}, {n: [] for n in m.nodes}
            return Histograms(m.tree, list(m.nodes), [b""] * len(m.nodes), [0] * len(m.nodes))
        groups = [(spos == n).astype(np.int8) for n in direct]
        hists = self._summer.bucket_sums(self._ct, groups, sbins, nb)
        new_hist = dict(zip(direct, hists, strict=True))
        for big, parent, small in derived:
            new_hist[big] = self._summer.sub(self._hist[parent], new_hist[small])
        sums, counts_out = [], []
        self._cands = {}
        k = self._params.min_rows
        for n in m.nodes:
            rows_n = sbins[spos == n]
            cands: list[tuple[int, int]] = []  # (local feature column, bin)
            index_lists: list[list[int]] = []
            for j in range(len(self._features)):
                cnt = np.bincount(rows_n[:, j], minlength=nb)
                for b in candidate_cuts(cnt, k):
                    left = int(cnt[: b + 1].sum())
                    self.sum_sizes.append((left, len(rows_n) - left))
                    cands.append((int(self._features[j]), b))
                    index_lists.append([j * nb + i for i in range(b + 1)])
            perm = self._rng.permutation(len(cands))
            cands = [cands[i] for i in perm]
            index_lists = [index_lists[i] for i in perm]
            self._cands[n] = cands
            sums.append(self._summer.select_sums(new_hist[n], index_lists) if cands else b"")
            counts_out.append(len(cands))
        self._hist = new_hist
        return Histograms(m.tree, list(m.nodes), sums, counts_out)

    def _split(self, m: SplitRequest) -> SplitResult:
        assert self._params is not None
        if m.tree != self._tree:
            raise RemoteProtocolError(f"split request for tree {m.tree} during tree {self._tree}")
        records, lefts = [], []
        for node, c in zip(m.nodes, m.candidates, strict=True):
            cands = self._cands.get(node)
            if cands is None or not 0 <= c < len(cands):
                raise RemoteProtocolError(f"no candidate {c} at node {node}")
            f, b = cands[c]
            rid = self.next_record
            self.table[rid] = (f, b, m.tree)
            records.append(rid)
            rows = np.flatnonzero(self._position == node)
            lefts.append(self.bins[rows, f] <= b)
        return SplitResult(m.tree, records, lefts)

    def _tree_end(self, m: TreeEnd) -> Ack:
        used = set(m.used_records)
        self.table = {r: v for r, v in self.table.items() if v[2] != m.tree or r in used}
        self.done_trees = m.tree + 1
        self._ct, self._hist = None, {}
        if self.on_tree_end is not None:
            self.on_tree_end(self)
        return Ack("tree_end")

    def predict_bits(self, m: PredictRequest, bins: Bins | None = None) -> PredictBits:
        b = self.bins if bins is None else bins
        if m.rows != len(b):
            return PredictBits([], np.zeros(0, np.uint8), f"{self.name} has {len(b)} rows to score, not {m.rows}")
        missing = [r for r in m.records if r not in self.table]
        if missing:
            return PredictBits([], np.zeros(0, np.uint8), f"{self.name} has no records {missing[:5]} (another model?)")
        bits = np.zeros((len(m.records), len(b)), dtype=bool)
        for i, r in enumerate(m.records):
            f, bb, _ = self.table[r]
            bits[i] = b[:, f] <= bb
        return PredictBits(list(m.records), np.packbits(bits, axis=1) if len(m.records) else np.zeros((0, 0), np.uint8))

    def export_table(self, m: ExportRequest) -> ExportTable:
        if not (m.consent and self.export_consent):
            who = "the active party" if not m.consent else self.name
            return ExportTable([], [], [], f"{who} did not consent to a plaintext export")
        binner = self.binner
        if binner is None:
            return ExportTable([], [], [], f"{self.name} has no bin thresholds to export")
        recs = sorted(self.table)
        feats, thr = [], []
        for r in recs:
            f, b, _ = self.table[r]
            fb = binner.features[f]
            if fb.kind != "numeric":
                return ExportTable([], [], [], f"feature {fb.name!r} is categorical; XGBoost JSON export is numeric only")
            feats.append(fb.name)
            thr.append(float(fb.cuts[b]))
        return ExportTable(recs, feats, thr, all_features=list(binner.names))


# ====================================================================== active


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
        plan = BoostPlan(p.to_dict(), self.cipher.scheme, self.cipher.public_bytes(), n, self.passives,
                         len(m.trees))
        acks = yield Exchange(dict.fromkeys(self.passives, plan), list(self.passives))
        for q in self.passives:
            a = acks[q]
            if not isinstance(a, PlanAck):
                raise RemoteProtocolError(f"expected PlanAck, got {type(a).__name__}", peer=q)
            if a.error:
                raise ConfigError(f"{q} refused the plan: {a.error}")
        resume = min([len(m.trees)] + [acks[q].done_trees for q in self.passives])
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
            ends = {q: TreeEnd(t, m.used_records(q, t)) for q in self.passives}
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
            fins[q] = Finish(m.run_id, gain, cnt)
        acks = yield Exchange(fins, list(self.passives))
        for q in self.passives:
            _expect_ack(acks[q], "finish", q)
        if self.on_tree_end is not None:
            self.on_tree_end(m)
        return m

    def _grow(self, t: int, margin: npt.NDArray[np.float64]) -> Generator[Exchange, dict[str, Any], tuple[list[Node], list[int]]]:
        p, n = self.p, len(self.y)
        g, h = grad_hess(self.y, margin, p.objective)
        rows = _subsample(n, p.subsample, p.seed, t)
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
        starts = {q: TreeStart(t, rows if q in in_tree else np.zeros(0, np.int64), blob if q in in_tree else b"",
                               shift, first_active) for q in self.passives}
        yield Exchange(starts, [])
        own_feats = _colsample(self.bins.shape[1], p.colsample_bytree, p.seed, t, 0)
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
                req = NodeRequest(t, depth, list(frontier), open_pos, pairs)
                hists = yield Exchange(dict.fromkeys(asked, req), asked)
                for q in asked:
                    hm = hists[q]
                    if not isinstance(hm, Histograms) or list(hm.nodes) != list(frontier):
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
                res = yield Exchange({q: SplitRequest(t, nl, cl) for q, (nl, cl) in req_by.items()}, list(req_by))
                for q, (nl, _) in req_by.items():
                    r = res[q]
                    if not isinstance(r, SplitResult) or len(r.records) != len(nl):
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
        reqs = {q: PredictRequest(m.run_id, n, m.used_records(q)) for q in m.passives}
        replies = yield Exchange(reqs, list(m.passives))
        bits: dict[tuple[str, int], npt.NDArray[np.bool_]] = {}
        for q in m.passives:
            r = replies[q]
            if not isinstance(r, PredictBits):
                raise RemoteProtocolError(f"expected PredictBits, got {type(r).__name__}", peer=q)
            if r.error:
                raise ConfigError(f"{q} cannot score: {r.error}")
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

    def export(self, consent: bool) -> Generator[Exchange, dict[str, Any], dict[str, ExportTable]]:
        """Ask every passive party for its thresholds (each must consent); returns their tables."""
        m = self.model
        req = ExportRequest(m.run_id, consent)
        replies = yield Exchange(dict.fromkeys(m.passives, req), list(m.passives))
        out = {}
        for q in m.passives:
            r = replies[q]
            if not isinstance(r, ExportTable):
                raise RemoteProtocolError(f"expected ExportTable, got {type(r).__name__}", peer=q)
            if r.error:
                raise ConfigError(f"export refused: {r.error}")
            out[q] = r
        return out


def _expect_ack(a: Any, step: str, q: str) -> None:
    if not isinstance(a, Ack) or a.step != step:
        raise RemoteProtocolError(f"expected Ack({step}), got {a!r}", peer=q)
    if a.error:
        raise RemoteProtocolError(f"{q} failed at {step}: {a.error}", peer=q)


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
