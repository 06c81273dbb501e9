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

import enum
import hashlib
import itertools
import logging
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from party.fsm import Machine, Table, transition
from psi.checkpoint import Checkpoint, input_digest
from psi.group import POINT_BYTES, SUITE, GroupEngine, InvalidPoint, random_scalar
from psi.messages import Count, Hello, Points
from psi.normalize import NormalizeOptions, PackedKeys

log = logging.getLogger(__name__)

PROTOCOL = "tessera-psi/1"
Mode = Literal["both", "one", "cardinality", "unbalanced"]
MODES: tuple[str, ...] = ("both", "one", "cardinality", "unbalanced")
#: The phases of mode "unbalanced" (:mod:`psi.unbalanced`).
Phase = Literal["offline", "online"]
PHASES: tuple[str, ...] = ("offline", "online")
#: The PSI protocols: this module's ECDH, and spu's RR22 and KKRT (:mod:`psi.spu`).
Protocol = Literal["ecdh", "rr22", "kkrt"]
PROTOCOLS: tuple[str, ...] = ("ecdh", "rr22", "kkrt")
#: What each party's output holds (:mod:`psi.join`).
Join = Literal["inner", "left", "right", "full", "difference"]
JOINS: tuple[str, ...] = ("inner", "left", "right", "full", "difference")
DEFAULT_CHUNK_POINTS = 1 << 16


class ConfigMismatch(ConfigError):
    """A peer runs PSI with another config (salt, normalisation, mode, parties, ...)."""

    def __init__(self, peer: str, fields: dict[str, tuple[Any, Any]]) -> None:
        parts = ", ".join(f"{k}: ours {a!r}, theirs {b!r}" for k, a, b in
                          ((k, v[0], v[1]) for k, v in sorted(fields.items())))
        super().__init__(f"party {peer!r} uses another PSI config ({parts}); both sides must agree")
        self.peer = peer
        self.fields = fields


@dataclass(frozen=True)
class PsiConfig:
    """Settings every party of one PSI run must share (checked in the hello).

    Args:
        mode: ``"both"`` (all learn the intersection), ``"one"`` (only
            ``receiver``), ``"cardinality"`` (all learn only its size), or
            ``"unbalanced"`` (two parties, both learn the intersection: the larger
            party's one-time offline phase, then short online queries; ECDH-OPRF with
            a cache, :mod:`psi.unbalanced`).
        phase: with mode ``"unbalanced"``: ``"offline"`` (build the cache) or
            ``"online"`` (query it; the default).
        receiver: who learns in mode ``"one"`` (default: the first party by name).
        normalize: ID normalisation (see :mod:`psi.normalize`).
        salt: a shared secret or label agreed out of band (optional; fresh
            nonces are mixed in every run anyway).
        chunk_points: points per message (memory per message is 32 × this).
        protocol: ``"ecdh"`` (this module; any number of parties), ``"rr22"`` or
            ``"kkrt"`` (SecretFlow's OT-based PSI, two parties, :mod:`psi.spu`).
        join: what each party's output holds (:mod:`psi.join`): ``"inner"`` (the
            shared rows), ``"left"``, ``"right"``, ``"full"`` (outer joins, rows the
            party lacks as placeholders) or ``"difference"`` (its rows not shared).
            Other than inner: two parties, mode ``"both"``.
        left: the left party of a left/right/full join (default: the first by name).
    """

    mode: Mode = "both"
    receiver: str | None = None
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)
    salt: bytes = field(default=b"", repr=False)
    chunk_points: int = DEFAULT_CHUNK_POINTS
    protocol: Protocol = "ecdh"
    join: Join = "inner"
    left: str | None = None
    phase: Phase = "online"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.phase not in PHASES:
            raise ConfigError(f"phase must be one of {', '.join(PHASES)}, not {self.phase!r}")
        if self.phase != "online" and self.mode != "unbalanced":
            raise ConfigError(f"phase {self.phase!r} is only meaningful in mode 'unbalanced' "
                              f"(mode is {self.mode!r})")
        if self.mode == "unbalanced" and self.protocol != "ecdh":
            raise ConfigError(f"mode 'unbalanced' runs its own ECDH-OPRF (protocol 'ecdh'), not "
                              f"protocol {self.protocol!r}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.join not in JOINS:
            raise ConfigError(f"join must be one of {', '.join(JOINS)}, not {self.join!r}")
        if self.join != "inner" and self.mode not in ("both", "unbalanced"):
            raise ConfigError(f"join {self.join!r} needs mode 'both' or 'unbalanced' (every party "
                              f"learns the intersection), not mode {self.mode!r}")
        if self.left is not None and self.join not in ("left", "right", "full"):
            raise ConfigError(f"left is only meaningful with join left, right or full (join is {self.join!r})")
        if self.protocol != "ecdh" and self.mode == "cardinality":
            raise ConfigError(f"mode 'cardinality' is only available with protocol 'ecdh' "
                              f"(spu's {self.protocol} reveals the intersection to its receiver)")
        if self.receiver is not None and self.mode != "one":
            raise ConfigError(f"receiver is only meaningful in mode 'one' (mode is {self.mode!r})")
        if not isinstance(self.salt, bytes):
            raise ConfigError("salt must be bytes")
        if not 1 <= self.chunk_points <= 1 << 22:
            raise ConfigError(f"chunk_points must be in 1..{1 << 22}, not {self.chunk_points}")

    def left_party(self, parties: Sequence[str]) -> str | None:
        """The left party of a left/right/full join (None for inner and difference)."""
        if self.join not in ("left", "right", "full"):
            return None
        left = self.left if self.left is not None else sorted(parties)[0]
        if left not in parties:
            raise ConfigError(f"left party {left!r} is not one of the parties {sorted(parties)}")
        return left

    def run_info(self, parties: Sequence[str]) -> dict[str, Any]:
        """What the run handshake compares before any protocol starts (protocol, join, left):
        a peer on another protocol or join type is a RunMismatch naming the field.

        The defaults (ECDH, inner join) add nothing, so an ECDH inner run opens with the
        same handshake as before protocols and joins existed; a field a peer lacks is
        reported as None (= the default)."""
        info: dict[str, Any] = {}
        if self.protocol != "ecdh" or self.join != "inner":
            info["protocol"] = self.protocol
        if self.mode == "unbalanced":
            info["mode"] = self.mode
        if self.join != "inner":
            info["join"] = self.join
            info["left"] = self.left_party(parties)
        return info

    def public(self, parties: Sequence[str]) -> dict[str, Any]:
        """What peers compare (the salt only as a hash)."""
        receiver = self.receiver if self.mode == "one" else None
        if self.mode == "one" and receiver is None:
            receiver = sorted(parties)[0]
        return {
            "protocol": PROTOCOL,
            "group": SUITE.decode(),
            "mode": self.mode,
            "receiver": receiver,
            "parties": sorted(parties),
            "normalize": self.normalize.public(),
            "salt_sha256": hashlib.sha256(b"tessera-psi salt\x00" + self.salt).hexdigest(),
            "chunk_points": self.chunk_points,
        }


class Stage(enum.Enum):
    IDLE = "idle"
    HELLO = "hello"  # hellos sent, waiting for the peers'
    READY = "ready"  # config agreed, salt known
    RUNNING = "running"  # own set sent; receiving streams
    DONE = "done"
    ABORTED = "aborted"  # a peer sent something illegal; secrets forgotten


#: event -> {stage it may happen in: stage it leaves} (party.fsm); the tests walk this table.
#: ``[last]`` is the hello / message that completes what the stage waits for; ``[done]``
#: is a resumed run whose every stream was saved (nothing left to receive).
TRANSITIONS: Table[Stage] = {
    "hello": {Stage.IDLE: Stage.HELLO},
    "on_hello[more]": {Stage.HELLO: Stage.HELLO},
    "on_hello[last]": {Stage.HELLO: Stage.READY},
    "own_chunks[send]": {Stage.READY: Stage.RUNNING},
    "own_chunks[done]": {Stage.READY: Stage.DONE},
    "receive[more]": {Stage.RUNNING: Stage.RUNNING},
    "receive[last]": {Stage.RUNNING: Stage.DONE},
}


def _hello_variant(s: PsiSession, src: str, msg: Any) -> str:
    return "last" if len(s._nonces) + (src not in s._nonces) == s.n else "more"


def _own_variant(s: PsiSession) -> str:
    return "send" if s._expect else "done"


def _receive_variant(s: PsiSession, src: str, step: str, msg: Any) -> str:
    last = isinstance(msg, Count) or getattr(msg, "last", False) is True
    return "last" if last and len(s._expect) == 1 else "more"


@dataclass(frozen=True)
class Send:
    """An outgoing message: the runner sends ``msg`` to ``dst`` at tag step ``step``."""

    dst: str
    step: str
    msg: Hello | Points | Count


@dataclass
class PsiResult:
    """What this party learned.

    ``rows`` are indices into the IDs given to :class:`PsiSession`, in the agreed
    order (``None`` when this party does not learn the intersection);
    ``size`` is the intersection size (``None`` when this party learns nothing).
    """

    rows: np.ndarray | None
    size: int | None
    own_size: int
    peer_sizes: dict[str, int]
    mode: str
    group_ops: int = 0
    normalize: Any = None  # psi.normalize.NormalizeReport when run_psi normalised the IDs
    worker_peak_rss_mb: float = 0.0  # largest group worker process (0: ran inline)
    run_id: str = ""  # the confirmed run identity (party.handshake), the same at every party
    protocol: str = "ecdh"
    join: str = "inner"  # with another join, rows holds -1 for a placeholder row (psi.join)
    backend: dict[str, Any] = field(default_factory=dict)  # spu: its own counts and seconds


def _chunks_of(n_points: int, chunk: int) -> int:
    return max(1, -(-n_points // chunk))


def _resume_id(nonces: dict[str, str]) -> bytes:
    return hashlib.sha256(
        b"tessera-psi resume\x00" + b"".join(bytes.fromhex(nonces[p]) for p in sorted(nonces))
    ).digest()


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


class PsiSession(Machine[Stage]):
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
    """

    transitions = TRANSITIONS
    aborted = Stage.ABORTED

    def __init__(
        self,
        me: str,
        parties: Sequence[str],
        keys: Sequence[bytes],
        config: PsiConfig | None = None,
        *,
        engine: GroupEngine | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.config = config or PsiConfig()
        self.parties = sorted(parties)
        if len(set(self.parties)) != len(self.parties):
            raise ConfigError(f"duplicate party names in {list(parties)}")
        if me not in self.parties:
            raise ConfigError(f"{me!r} is not one of the PSI parties {self.parties}")
        if len(self.parties) < 2:
            raise ConfigError("PSI needs at least two parties")
        self.me = me
        self.n = len(self.parties)
        self.i = self.parties.index(me)
        self.next = self.parties[(self.i + 1) % self.n]
        self.prev = self.parties[(self.i - 1) % self.n]
        self.peers = [p for p in self.parties if p != me]
        self.public = self.config.public(self.parties)
        if self.config.mode == "one":
            receiver = self.public["receiver"]
            if receiver not in self.parties:
                raise ConfigError(f"receiver {receiver!r} is not one of the parties {self.parties}")
            self.learners = [receiver]
        else:
            self.learners = list(self.parties)
        self.leader = self.learners[0]
        self.keys = keys
        self.engine = engine or GroupEngine(workers=0)
        self.stage = Stage.IDLE
        self._scalar = random_scalar()
        self._nonce = secrets.token_bytes(32)
        self._perm_seed = int.from_bytes(secrets.token_bytes(16), "little")
        self.checkpoint = checkpoint
        self._saved: dict[str, Any] | None = None
        self._resume_ids: dict[str, bytes] = {me: b""}
        self._have: dict[str, set[str]] = {p: set() for p in self.parties}
        self._skip_chain: set[str] = set()
        self.resumed = False
        if checkpoint is not None:
            self._digest = input_digest(keys)
            st = checkpoint.load(digest=self._digest, public=self.public)
            if st is not None:
                self._saved = st
                self._scalar = bytes.fromhex(st["scalar"])
                self._nonce = bytes.fromhex(st["nonces"][me])
                self._perm_seed = int(st["perm_seed"])
                self._resume_ids[me] = _resume_id(st["nonces"])
                self._have[me] = set(checkpoint.have())
        self._nonces: dict[str, bytes] = {me: self._nonce}
        self.sizes: dict[str, int] = {me: len(keys)}
        self.dst = b""
        self._perm: np.ndarray | None = None
        self._expect: list[tuple[str, str]] = []  # streams still to receive, in order
        self._got: dict[tuple[str, str], int] = {}  # (src, step) -> chunks / points received
        self._buffers: dict[str, bytearray] = {}  # "full:<origin>", "return", "collect:<o>", "result"
        self._result: PsiResult | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _label(self) -> str:
        return f"PSI {self.me}"

    def _on_abort(self, error: BaseException | None) -> None:
        self._scalar = bytes(len(self._scalar))
        self._buffers.clear()
        self._perm = None

    def _stream(self, dst: str, step: str, data: bytes | bytearray, *, sort: bool = False) -> Iterator[Send]:
        """The chunks of one stream, made as they are sent (one chunk in memory at a time)."""
        pts = _as_s32(data)
        if sort:
            pts = np.sort(pts)
        c = self.config.chunk_points
        n = _chunks_of(len(pts), c)
        return (Send(dst, step, Points(k, k == n - 1, pts[k * c : (k + 1) * c].tobytes())) for k in range(n))

    @property
    def done(self) -> bool:
        return self.stage is Stage.DONE

    # -- stage 0: hello --------------------------------------------------------------------

    @transition("hello")
    def hello(self) -> list[Send]:
        """The hello for every peer."""
        msg = Hello(config=self.public, n_items=len(self.keys), nonce=self._nonce,
                    resume=self._resume_ids[self.me], have=sorted(self._have[self.me]))
        return [Send(p, "hello", msg) for p in self.peers]

    @transition("on_hello", _hello_variant)
    def on_hello(self, src: str, msg: Hello) -> None:
        """Check a peer's hello; after the last one the session salt is fixed."""
        if src not in self.peers or src in self._nonces:
            raise RemoteProtocolError(f"unexpected hello from {src!r}", peer=src)
        if not isinstance(msg, Hello):
            raise RemoteProtocolError(f"expected Hello, got {type(msg).__name__}", peer=src)
        if msg.config != self.public:
            keys = set(msg.config) | set(self.public)
            diff = {
                k: (self.public.get(k), msg.config.get(k))
                for k in keys
                if self.public.get(k) != msg.config.get(k)
            }
            raise ConfigMismatch(src, diff)
        self._nonces[src] = msg.nonce
        self.sizes[src] = msg.n_items
        self._resume_ids[src] = msg.resume
        self._have[src] = set(msg.have)
        if len(self._nonces) == self.n:
            self._decide_resume()
            salt = hashlib.sha512(
                b"tessera-psi session salt\x00"
                + self.config.salt
                + b"".join(self._nonces[p] for p in self.parties)
            ).digest()[:32]
            self.dst = b"TESSERA-PSI-V1-" + SUITE + b"-" + salt.hex().encode()
            self._plan()

    def salt_proof(self) -> bytes:
        """SHA-256 of the session DST: parties compare it before any point is sent."""
        if self.stage is Stage.IDLE or self.stage is Stage.HELLO:
            raise LocalProtocolError(f"PSI {self.me}: salt_proof() before every hello arrived")
        if self.stage is Stage.ABORTED:
            raise LocalProtocolError(f"PSI {self.me}: salt_proof() after the session aborted")
        return hashlib.sha256(b"tessera-psi salt proof\x00" + self.dst).digest()

    def _decide_resume(self) -> None:
        """Resume only if every party brought a checkpoint of this very session."""
        ids = set(self._resume_ids.values())
        self.resumed = len(ids) == 1 and b"" not in ids and self._saved is not None
        if self.resumed:
            log.info("psi %s: resuming; saved streams %s", self.me, sorted(self._have[self.me]))
            for step in self._have[self.me]:
                assert self.checkpoint is not None
                self._buffers[step] = bytearray(self.checkpoint.load_blob(step))
            return
        self._have = {p: set() for p in self.parties}
        if self._saved is not None:  # not everyone can resume: start over, fresh secrets
            assert self.checkpoint is not None
            log.info("psi %s: peers have no matching checkpoint; starting over", self.me)
            self.checkpoint.clear()
            self._saved = None
            self._scalar = random_scalar()
            self._perm_seed = int.from_bytes(secrets.token_bytes(16), "little")
        if self.checkpoint is not None:
            self.checkpoint.save({
                "input_sha256": self._digest,
                "config": self.public,
                "scalar": self._scalar.hex(),
                "nonces": {p: v.hex() for p, v in self._nonces.items()},
                "perm_seed": self._perm_seed,
            })

    def _save(self, step: str, data: bytes | bytearray) -> None:
        if self.checkpoint is not None and step not in self._have[self.me]:
            self.checkpoint.save_blob(step, bytes(data))
            self._have[self.me].add(step)

    def _holder_of(self, origin: str) -> str:
        return self.parties[(self.parties.index(origin) - 1) % self.n]

    def _plan(self) -> None:
        """The streams this party will receive, in the order it waits for them."""
        exp: list[tuple[str, str]] = []
        mine = self._have[self.me]
        # a set's whole chain is skipped when its holder saved the full values
        self._skip_chain = {o for o in self.parties if f"full:{o}" in self._have[self._holder_of(o)]}
        for h in range(1, self.n):
            origin = self.parties[(self.i - h) % self.n]
            if origin not in self._skip_chain:
                exp.append((self.prev, f"chain:{origin}:{h}"))
        if self._gets_return(self.me) and f"return:{self.me}" not in mine:
            exp.append((self.prev, f"return:{self.me}"))
        if self.me == self.leader:
            for o in self.parties:
                holder = self._holder_of(o)
                if o != self.me and holder != self.me and f"collect:{o}" not in mine:
                    exp.append((holder, f"collect:{o}"))
        elif self.me in self.learners:
            exp.append((self.leader, "result"))
        self._expect = exp

    def _gets_return(self, origin: str) -> bool:
        if origin not in self.learners:
            return False
        return self.config.mode != "cardinality" or origin == self.leader

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
