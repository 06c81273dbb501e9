"""The passive party's SecureBoost machine (no I/O): its bin codes and lookup table; it maps each
message of the active party to its reply. Who learns what: ``vfl.boost.protocol``."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from vfl.boost.crypto import Summer, make_summer
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
    dispatch,
)
from vfl.boost.params import BoostParams
from vfl.boost.schedule import SUB_ROWS_PER_BIN, Bins, candidate_cuts, colsample


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
        return dispatch(msg, {
            TreeStart: self._tree_start, NodeRequest: self._nodes, SplitRequest: self._split,
            TreeEnd: self._tree_end, Finish: self._finish, PredictRequest: self.predict_bits,
            ExportRequest: self.export_table,
        })

    def _finish(self, msg: Finish) -> Ack:
        self.run_id = msg.run_id
        self.record_gain = {int(k): float(v) for k, v in msg.record_gain.items()}
        self.record_count = {int(k): int(v) for k, v in msg.record_count.items()}
        if self.on_tree_end is not None:
            self.on_tree_end(self)
        return Ack("finish")

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
        self._features = colsample(self.bins.shape[1], self._params.colsample_bytree,
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

