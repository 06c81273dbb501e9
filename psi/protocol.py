"""ECDH-PSI over ristretto255 for two or more parties: a sans-I/O state machine per party.

Protocol (parties sorted by name, P_0 … P_{n-1}, in a ring; ``next`` = P_{i+1}):

0. **hello.** Each party sends every peer its public config (mode, receiver,
   normalisation, a SHA-256 of the shared salt, chunk size, party list, group
   suite), its set size and a fresh 32-byte nonce. Any difference in config is a
   :class:`ConfigMismatch` naming the field, before any ID is touched. The
   session salt is SHA-512 of the shared salt and all nonces; the hash-to-group
   domain separation tag (DST) contains it, so points of one session mean
   nothing in another.
1. **own.** P_i normalises its IDs, hashes each with RFC 9380
   ``hash_to_ristretto255(id, DST)``, shuffles them with a secret permutation,
   raises them to its secret scalar ``k_i`` and streams them to ``next`` in
   chunks.
2. **chain.** Each set travels once around the ring; every party raises each
   chunk it receives to its own scalar and passes it on, in order. After n−1
   hops the set of P_j carries all n scalars: ``H(x)^(k_0…k_{n-1})``, the *full*
   value, now held by P_{j-1}. Every received point is checked (canonical
   encoding, not the identity) before it is multiplied.
3. **finish.** The *leader* is the first learner by name. The holder of P_j's
   full values returns them to P_j in the order received (so P_j can undo its
   shuffle and map them to rows) when P_j is a learner — sorted instead in
   cardinality mode, and then only to the leader — and sends them sorted to the
   leader when neither it nor P_j is the leader.
4. **intersect.** The leader intersects the n full sets and sends the sorted
   intersection (or, in cardinality mode, its size) to the other learners.
   Each learner keeps its rows whose full value is in the intersection, in the
   sort order of the full values: the *agreed order*, identical at every
   learner without exchanging any ID.

Resume: with a :class:`psi.checkpoint.Checkpoint`, each party saves its
scalar, the nonces and every finished stream of full values (before passing it
on). After a kill, when every party comes back with a checkpoint of the same
session (the hello carries a hash of its nonces and the list of saved
streams), chains whose holder saved the full values are skipped, saved streams
are re-sent from disk, and the output is identical (same scalars, same DST).
Otherwise everyone starts over with fresh secrets.

Modes: ``"both"`` (default: every party learns the intersection), ``"one"``
(only ``receiver`` learns it), ``"cardinality"`` (every party learns only its size).

Layout: :class:`PsiSession` (stages 1-4) is here; its state and stage 0 (hello,
session salt, resume decision, plan of streams) are :class:`psi.ecdh_setup.EcdhSetup`;
the settings and the result every protocol shares are :mod:`psi.config` (all
importable from here as before).

Security argument (semi-honest parties; DDH in ristretto255; H a random oracle):

* A party sees other parties' values only as ``H(x)^(product of scalars it does
  not know)``, in a random order. Under DDH these are indistinguishable from
  random group elements, so it learns nothing about the IDs behind them, not
  even equality with its own IDs, except through full values it can compare
  with its own full values.
* A party compares full values only where the protocol hands them over:
  learners get their own full values back and the (sorted) intersection, so
  they learn the intersection and nothing about non-shared IDs. In ``"one"``
  mode the non-receiver never gets its own full values back, so it learns
  nothing but set sizes. In cardinality mode the full values come back sorted
  (random order with respect to rows) and only the count is broadcast, so a
  party learns the intersection size but not which rows.
* Leaks by design: every set size (in the hello), and the intersection (or its
  size) to the learners. With n ≥ 3, the leader additionally learns, for each
  of its own IDs, which other parties hold it, and the sizes of intersections
  among the other parties' sets (it holds all full sets); choose the leader
  (``receiver``) accordingly. With n = 2 nothing beyond the declared items leaks.
* The hash to group is a proper RFC 9380/RFC 9496 map (discrete logs of
  ``H(x)`` unknown), never ``g^hash(x)``, which would let anyone unmask values.
* Scalars never leave their owner (they go to its own worker processes only).
* Not covered: malicious parties (one could send other points than its IDs'
  hashes, or drop items); they are detected only where it is cheap (wrong sizes,
  invalid or identity points, wrong config).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from party.errors import LocalProtocolError, RemoteProtocolError
from party.fsm import transition
from psi.config import DEFAULT_CHUNK_POINTS as DEFAULT_CHUNK_POINTS
from psi.config import JOINS, MODES, PROTOCOL, PROTOCOLS, ConfigMismatch, PsiConfig, PsiResult
from psi.config import PHASES as PHASES
from psi.config import Join as Join
from psi.config import Mode as Mode
from psi.config import Phase as Phase
from psi.config import Protocol as Protocol
from psi.ecdh_setup import TRANSITIONS, EcdhSetup, Send, Stage
from psi.group import POINT_BYTES, InvalidPoint
from psi.messages import Count, Points
from psi.normalize import PackedKeys


def _own_variant(s: PsiSession) -> str:
    return "send" if s._expect else "done"


def _receive_variant(s: PsiSession, src: str, step: str, msg: Any) -> str:
    last = isinstance(msg, Count) or getattr(msg, "last", False) is True
    return "last" if last and len(s._expect) == 1 else "more"


def _chunks_of(n_points: int, chunk: int) -> int:
    return max(1, -(-n_points // chunk))


def _as_s32(data: bytes | bytearray) -> np.ndarray:
    """A view, no copy (a bytearray must not grow while the view lives: only complete
    streams are viewed)."""
    return np.frombuffer(data, dtype="S32")


def _member(values: np.ndarray, sorted_set: np.ndarray, step: int = 1 << 20) -> np.ndarray:
    """``values[i] in sorted_set`` for each i, by binary search, in slices (bounded temporaries)."""
    hit = np.zeros(len(values), dtype=bool)
    if len(sorted_set) == 0:
        return hit
    for k in range(0, len(values), step):
        part = values[k : k + step]
        pos = np.searchsorted(sorted_set, part)
        pos[pos >= len(sorted_set)] = 0
        hit[k : k + step] = sorted_set[pos] == part
    return hit


def _take(keys: Sequence[bytes], idx: np.ndarray) -> list[bytes]:
    if isinstance(keys, PackedKeys):
        return keys.take(idx)
    return [keys[j] for j in idx.tolist()]


class PsiSession(EcdhSetup):
    """One party's side of one PSI run; no I/O (the runner moves :class:`Send` s).

    Call :meth:`hello`, feed every peer's hello to :meth:`on_hello`, stream
    :meth:`own_chunks`, then loop ``src, step = next_expected()`` /
    ``receive(src, step, msg)`` until :attr:`done`; :meth:`result` gives the rows.

    Args:
        me: this party's name.
        parties: all parties of the run, ``me`` included (at least two).
        keys: this party's canonical ID bytes (see :func:`psi.normalize.normalize_ids`),
            unique.
        config: shared settings.
        engine: where group operations run (inline by default).

    The stages follow :data:`TRANSITIONS` through :mod:`party.fsm`'s guard: a call
    in another stage is a :class:`party.fsm.StageError`; a peer's illegal message
    (:class:`RemoteProtocolError`) aborts the session (stage ``ABORTED``, the scalar
    and the buffers forgotten; the checkpoint on disk is kept).

    The state, the hellos, the session salt, the resume decision and the plan of
    streams (stage 0) are :class:`psi.ecdh_setup.EcdhSetup`'s.
    """

    def _stream(self, dst: str, step: str, data: bytes | bytearray, *, sort: bool = False) -> Iterator[Send]:
        """The chunks of one stream, made as they are sent (one chunk in memory at a time)."""
        pts = _as_s32(data)
        if sort:
            pts = np.sort(pts)
        c = self.config.chunk_points
        n = _chunks_of(len(pts), c)
        return (Send(dst, step, Points(k, k == n - 1, pts[k * c : (k + 1) * c].tobytes())) for k in range(n))

    # -- stage 1: own set ------------------------------------------------------------------

    @transition("own_chunks", _own_variant)
    def own_chunks(self) -> Iterator[Send]:
        """Hash, shuffle and mask this party's IDs; one :class:`Send` per chunk, lazily.

        The stage changes at once (a resumed run whose every stream was saved finishes
        here); the own chunks are hashed and masked as the returned iterator is consumed
        (send them all before the next call)."""
        n = len(self.keys)
        self._perm = np.random.Generator(np.random.PCG64(self._perm_seed)).permutation(n)
        c = self.config.chunk_points
        n_chunks = 0 if self.me in self._skip_chain else _chunks_of(n, c)
        out: Iterator[Send] = self._own_sends(n_chunks)
        for o in sorted(self._skip_chain):  # resumed: pass on saved full values
            if self._holder_of(o) == self.me:
                out = itertools.chain(out, self._on_full(o))
        if not self._expect:  # resumed with everything saved
            if self.me == self.leader:
                out = itertools.chain(out, self._intersect())
            else:
                self._finish()
        return out

    def _own_sends(self, n_chunks: int) -> Iterator[Send]:
        assert self._perm is not None
        c = self.config.chunk_points
        for k in range(n_chunks):
            idx = self._perm[k * c : (k + 1) * c]
            pts = self.engine.hash_to_group(_take(self.keys, idx), self.dst)
            masked = self.engine.mask(pts, self._scalar)
            yield Send(self.next, f"chain:{self.me}:1", Points(k, k == n_chunks - 1, masked))

    # -- stages 2-4: streams ---------------------------------------------------------------

    def next_expected(self) -> tuple[str, str]:
        """(source, step) of the next message to wait for."""
        if self.stage is not Stage.RUNNING or not self._expect:
            raise LocalProtocolError(f"PSI {self.me}: nothing to receive in stage {self.stage.value}")
        return self._expect[0]

    def expected_points(self, step: str) -> int | None:
        """How many points the stream ``step`` carries (None: not known in advance)."""
        kind, _, rest = step.partition(":")
        if kind in ("chain", "collect"):
            return self.sizes[rest.split(":")[0]]
        if kind == "return":
            return self.sizes[self.me]
        return None

    @transition("receive", _receive_variant)
    def receive(self, src: str, step: str, msg: Points | Count) -> Iterable[Send]:
        """Handle one message of the stream :meth:`next_expected` named.

        The state changes at once; the returned sends are produced as they are
        iterated (send them all before the next call)."""
        want = self.next_expected()
        if (src, step) != want:
            raise LocalProtocolError(f"PSI {self.me}: got {(src, step)}, expected {want}")
        key = (src, step)
        kind = step.split(":")[0]
        if kind == "result" and self.config.mode == "cardinality":
            if not isinstance(msg, Count):
                raise RemoteProtocolError(f"expected Count for {step}", peer=src)
            self._expect.pop(0)
            self._finish(count=msg.size)
            return []
        if not isinstance(msg, Points):
            raise RemoteProtocolError(f"expected Points for {step}, got {type(msg).__name__}", peer=src)
        seen = self._got.get(key, 0)
        if msg.index != seen:
            raise RemoteProtocolError(f"{step}: chunk {msg.index} arrived, expected {seen}", peer=src)
        total = self.expected_points(step)
        points_before = len(self._buffers.get(step, b"")) // POINT_BYTES if kind != "chain" else 0
        if kind == "chain":
            points_before = self._got.get((src, step + "#points"), 0)
        if total is not None:
            if points_before + msg.count > total:
                raise RemoteProtocolError(
                    f"{step}: more than the {total} points announced", peer=src
                )
            if msg.last and points_before + msg.count != total:
                raise RemoteProtocolError(
                    f"{step}: stream ended after {points_before + msg.count} of {total} points",
                    peer=src,
                )
        self._got[key] = seen + 1
        out: Iterable[Send] = []
        if kind == "chain":
            self._got[(src, step + "#points")] = points_before + msg.count
            out = self._on_chain(src, step, msg)
        else:
            if msg.count and (_as_s32(msg.data) == b"").any():
                raise RemoteProtocolError(f"{step}: identity element received", peer=src)
            self._buffers.setdefault(step, bytearray()).extend(msg.data)
        if msg.last:
            self._expect.pop(0)
            if kind in ("return", "collect"):
                self._save(step, self._buffers[step])
            if kind == "chain" and step.endswith(f":{self.n - 1}"):
                out = itertools.chain(out, self._on_full(step.split(":")[1]))
            if self.me == self.leader and self._leader_ready():
                out = itertools.chain(out, self._intersect())
            elif not self._expect:
                self._finish()
        return out

    def _on_chain(self, src: str, step: str, msg: Points) -> list[Send]:
        _, origin, hop_s = step.split(":")
        hop = int(hop_s)
        try:
            masked = self.engine.mask(msg.data, self._scalar)
        except InvalidPoint as e:
            raise RemoteProtocolError(
                f"{step}: chunk {msg.index}, {e} (refused before multiplying)", peer=src
            ) from None
        if hop < self.n - 1:
            return [Send(self.next, f"chain:{origin}:{hop + 1}", Points(msg.index, msg.last, masked))]
        self._buffers.setdefault(f"full:{origin}", bytearray()).extend(masked)
        return []

    def _on_full(self, origin: str) -> Iterable[Send]:
        """This party now holds ``origin``'s full values (it is ``origin``'s holder)."""
        data = self._buffers[f"full:{origin}"]  # complete: never extended again
        self._save(f"full:{origin}", data)  # before anyone is told: a resume can re-send it
        out: Iterable[Send] = []
        cardinality = self.config.mode == "cardinality"
        if self._gets_return(origin) and f"return:{origin}" not in self._have[origin]:
            out = itertools.chain(out, self._stream(origin, f"return:{origin}", data, sort=cardinality))
        if (
            self.me != self.leader
            and origin != self.leader
            and f"collect:{origin}" not in self._have[self.leader]
        ):
            out = itertools.chain(out, self._stream(self.leader, f"collect:{origin}", data, sort=True))
        if self.me != self.leader:
            del self._buffers[f"full:{origin}"]
        return out

    def _leader_ready(self) -> bool:
        return not self._expect and self._result is None

    def _own_full(self) -> np.ndarray:
        """This party's full values in row order (undoing the shuffle)."""
        got = _as_s32(self._buffers["return:" + self.me])
        if self.config.mode == "cardinality":
            return got
        assert self._perm is not None
        full = np.empty(len(got), dtype="S32")
        full[self._perm] = got
        return full

    def _intersect(self) -> Iterable[Send]:
        # sorted arrays and binary search: about 3 copies of one set in memory, no hash table
        own = self._own_full()
        self._buffers.pop("return:" + self.me, None)  # own holds it now, in row order
        common = np.sort(own)
        for o in self.parties:
            if o == self.me:
                continue
            buf = self._buffers.get(f"full:{o}")
            if buf is None:
                buf = self._buffers.get(f"collect:{o}")
            if buf is None:  # pragma: no cover - _plan guarantees it
                raise LocalProtocolError(f"PSI {self.me}: no full values of {o!r}")
            common = common[_member(common, np.sort(_as_s32(buf)))]
        others = [p for p in self.learners if p != self.me]
        out: Iterable[Send] = []
        if self.config.mode == "cardinality":
            out = [Send(p, "result", Count(len(common))) for p in others]
            self._finish(count=len(common))
        else:
            data = common.tobytes()
            for p in others:
                out = itertools.chain(out, self._stream(p, "result", data))
            self._finish(common=common, own=own)
        return out

    def _finish(
        self, *, common: np.ndarray | None = None, count: int | None = None, own: np.ndarray | None = None
    ) -> None:
        rows: np.ndarray | None = None
        size: int | None = count
        mode = self.config.mode
        if self.me in self.learners and mode != "cardinality":
            if common is None:
                common = _as_s32(self._buffers["result"])
                if len(common) > 1 and not (common[1:] > common[:-1]).all():
                    raise RemoteProtocolError("result: intersection not sorted/unique", peer=self.leader)
            full = self._own_full() if own is None else own
            idx = np.flatnonzero(_member(full, common))
            rows = idx[np.argsort(full[idx], kind="stable")].astype(np.int64)
            size = len(common)
            if len(rows) != size:
                raise RemoteProtocolError(
                    f"result: {size} shared values, but only {len(rows)} are ours", peer=self.leader
                )
        self._buffers.clear()
        self._result = PsiResult(
            rows=rows,
            size=size,
            own_size=len(self.keys),
            peer_sizes={p: self.sizes[p] for p in self.peers},
            mode=mode,
            group_ops=self.engine.ops,
        )

    def result(self) -> PsiResult:
        """What this party learned (after :attr:`done`)."""
        if self._result is None:
            raise LocalProtocolError(f"PSI {self.me}: result() before the protocol finished")
        # the whole run's count: a resumed run that had every stream saved finishes in
        # own_chunks(), before its own chunks are hashed as they are sent
        self._result.group_ops = self.engine.ops
        return self._result


__all__ = [
    "JOINS",
    "MODES",
    "PROTOCOL",
    "PROTOCOLS",
    "TRANSITIONS",
    "ConfigMismatch",
    "PsiConfig",
    "PsiResult",
    "PsiSession",
    "Send",
    "Stage",
]
