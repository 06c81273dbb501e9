"""Stage 0 of an ECDH-PSI session: its stages, its transition table, the hellos, the
session salt, the resume decision and the plan of the streams a party will receive.

:class:`EcdhSetup` is the base of :class:`psi.protocol.PsiSession` (which adds stages
1-4: the own set, the chains, the returns and the intersection) and is not used alone.
The protocol, its resume rules and its security argument are described in
:mod:`psi.protocol`; the part of the argument that lives here: the session salt is
SHA-512 of the shared salt and every party's fresh nonce, and the hash-to-group
domain separation tag contains it, so points of one session mean nothing in another;
a resumed run reuses the saved scalar and nonces only when every party brought a
checkpoint of this very session, otherwise everyone starts over with fresh secrets.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from party.fsm import Machine, Table, transition
from psi.checkpoint import Checkpoint, input_digest
from psi.config import ConfigMismatch, PsiConfig, PsiResult
from psi.group import SUITE, GroupEngine, random_scalar
from psi.messages import Count, Hello, Points

log = logging.getLogger("psi.protocol")  # the name the resume messages always had


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


def _hello_variant(s: EcdhSetup, src: str, msg: Any) -> str:
    return "last" if len(s._nonces) + (src not in s._nonces) == s.n else "more"


@dataclass(frozen=True)
class Send:
    """An outgoing message: the runner sends ``msg`` to ``dst`` at tag step ``step``."""

    dst: str
    step: str
    msg: Hello | Points | Count


def _resume_id(nonces: dict[str, str]) -> bytes:
    return hashlib.sha256(
        b"tessera-psi resume\x00" + b"".join(bytes.fromhex(nonces[p]) for p in sorted(nonces))
    ).digest()


class EcdhSetup(Machine[Stage]):
    """The state of one party's ECDH-PSI session and stage 0 (hello, salt, resume, plan);
    see :class:`psi.protocol.PsiSession`, which adds the streams, for the arguments."""

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


__all__ = ["TRANSITIONS", "EcdhSetup", "Send", "Stage"]
