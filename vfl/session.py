"""The split trainer's session handshake as two sans-I/O machines (``party.fsm``).

The runners (:mod:`vfl.trainer`) move these messages; the machines decide what is
sent, check what arrives and refuse anything out of order. One run, after the
confirmed run handshake (``party.handshake.open_run``):

Training (tags ``vfl/<session>/0/plan`` ... ``vfl.ctl/<session>/<n>/cmd``):

1. A -> every P ``TrainPlan``: mode, rows, the digest of the aligned IDs, batches,
   epochs, the shared seed, k, the shared SGD step, A's resumable checkpoints.
2. P -> A ``PlanAck``: P refuses (``error``) a plan whose rows, ID digest or mode
   differ from its own; else its output width d, its checkpoints, and in plaintext
   mode its initial interactive weights. A refuses a refusal (``ConfigError``).
3. (the interactive layer's key exchange, in HE mode)
4. A -> P ``EpochCommand(resume, e)``: e is the newest checkpoint every party has
   (-1: none); then per epoch ``EpochCommand(train, e)`` ... ``EpochEnd(e, best)``
   and P -> A ``Ack(e)`` once its checkpoint is written; finally
   ``EpochCommand(stop, run_id=...)`` (a fresh random ID naming the trained model).

Scoring a *loaded* model (tags ``vfl.open/<session>/0/...``): A -> P
``ScoreHello(run_id, mode, k)``; P -> A ``ScoreHelloAck(run_id, d, error)``
(P refuses halves of another run, mode or k). Then, for trained or loaded halves,
every scoring round: A -> P ``ScoreRequest(rows, digest, batch_size)``; P -> A
``ScoreReady(ok, error)``: P scores only rows with its own count and ID digest.

What each party learns here: the other's public settings, row count and ID digest
(both hold the same aligned IDs), d and k, the random run_id and which epochs the
other can resume from; nothing about features, labels or weights.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from party.errors import ConfigError, RemoteProtocolError
from party.fsm import Machine, Table, transition
from vfl.messages import (
    Ack,
    EpochCommand,
    EpochEnd,
    PlanAck,
    ScoreHello,
    ScoreHelloAck,
    ScoreReady,
    ScoreRequest,
    TrainPlan,
)


def id_digest(ids: Sequence[str] | None, rows: int) -> str:
    """SHA-256 over the ordered row IDs (both parties hold the same aligned IDs)."""
    h = hashlib.sha256(f"rows={rows}\n".encode())
    if ids is not None:
        for i in ids:
            h.update(str(i).encode())
            h.update(b"\n")
    return h.hexdigest()


class Stage(enum.Enum):
    NEW = "new"            # training: nothing sent yet
    PLANNED = "planned"    # A: plan sent / P: plan accepted
    ACCEPTED = "accepted"  # A: every P accepted (keys are exchanged now)
    IDLE = "idle"          # between epochs (after resume)
    EPOCH = "epoch"        # an epoch is being trained
    ENDED = "ended"        # the epoch's end sent / received; its checkpoints are written
    TRAINED = "trained"    # stopped: the model can score
    LOADED = "loaded"      # a saved half, before its scoring session opened
    HELLO = "hello"        # A: ScoreHello sent
    SCORING = "scoring"    # A: a ScoreRequest sent
    REFUSED = "refused"    # P refused the plan or the hello; the run ends (ConfigError)
    ABORTED = "aborted"    # the peer sent something illegal


#: event -> {stage it may happen in: stage it leaves}
ACTIVE_TRANSITIONS: Final[Table[Stage]] = {
    "plan": {Stage.NEW: Stage.PLANNED},
    "on_plan_acks": {Stage.PLANNED: Stage.ACCEPTED},
    "resume": {Stage.ACCEPTED: Stage.IDLE},
    "train": {Stage.IDLE: Stage.EPOCH},
    "end_epoch": {Stage.EPOCH: Stage.ENDED},
    "on_acks": {Stage.ENDED: Stage.IDLE},
    "stop": {Stage.IDLE: Stage.TRAINED},
    "hello": {Stage.LOADED: Stage.HELLO},
    "on_hello_acks": {Stage.HELLO: Stage.TRAINED},
    "score": {Stage.TRAINED: Stage.SCORING},
    "on_ready": {Stage.SCORING: Stage.TRAINED},
}
PASSIVE_TRANSITIONS: Final[Table[Stage]] = {
    "on_plan[accept]": {Stage.NEW: Stage.PLANNED},
    "on_plan[refuse]": {Stage.NEW: Stage.REFUSED},
    "on_command[resume]": {Stage.PLANNED: Stage.IDLE},
    "on_command[train]": {Stage.IDLE: Stage.EPOCH},
    "on_command[stop]": {Stage.IDLE: Stage.TRAINED},
    "on_epoch_end": {Stage.EPOCH: Stage.ENDED},
    "ack": {Stage.ENDED: Stage.IDLE},
    "on_hello[accept]": {Stage.LOADED: Stage.TRAINED},
    "on_hello[refuse]": {Stage.LOADED: Stage.REFUSED},
    "on_score_request": {Stage.TRAINED: Stage.TRAINED},
}


@dataclass(frozen=True)
class Rows:
    """What one party holds: its row count and the digest of its aligned IDs."""

    rows: int
    digest: str


class ActiveSession(Machine[Stage]):
    """A's side of the session: builds the plan and the commands, checks every answer."""

    transitions = ACTIVE_TRANSITIONS
    aborted = Stage.ABORTED

    def __init__(self, me: str, passives: Sequence[str], *, loaded: bool = False) -> None:
        self.me = me
        self.passives = list(passives)
        self.stage = Stage.LOADED if loaded else Stage.NEW
        self.epoch = -1  # the epoch being trained / ended
        self._plan: TrainPlan | None = None

    def _label(self) -> str:
        return f"vfl session {self.me} (active)"

    def _all(self, got: Mapping[str, object], what: str, *only: str) -> None:
        missing = [p for p in (only or self.passives) if p not in got]
        if missing:
            raise RemoteProtocolError(f"no {what} from {missing}", peer=missing[0])

    # -- training ---------------------------------------------------------------
    @transition("plan")
    def plan(self, plan: TrainPlan) -> TrainPlan:
        """Step 1: the plan every passive party gets."""
        self._plan = plan
        return plan

    @transition("on_plan_acks")
    def on_plan_acks(self, acks: Mapping[str, PlanAck]) -> int:
        """Step 2: every P accepted; returns the newest epoch all can resume from (-1: none).

        Raises:
            ConfigError: a passive party refused the plan (its message says why).
        """
        assert self._plan is not None
        for p in self.passives:  # in order: a runner stops collecting at the first refusal
            self._all(acks, "plan ack", p)
            if acks[p].error:
                raise ConfigError(f"{p} refused the training plan: {acks[p].error}")
        common = set(self._plan.checkpoints)
        for p in self.passives:
            common &= set(acks[p].checkpoints)
        return max(common) if common else -1

    @transition("resume")
    def resume(self, epoch: int) -> EpochCommand:
        """Step 4: resume after ``epoch`` (-1: from the start)."""
        self.epoch = epoch
        return EpochCommand(action="resume", epoch=epoch, best_epoch=-1)

    @transition("train")
    def train(self, epoch: int, best_epoch: int) -> EpochCommand:
        if epoch <= self.epoch:
            raise ValueError(f"epoch {epoch} after epoch {self.epoch}")
        self.epoch = epoch
        return EpochCommand(action="train", epoch=epoch, best_epoch=best_epoch)

    @transition("end_epoch")
    def end_epoch(self, best_epoch: int) -> EpochEnd:
        return EpochEnd(epoch=self.epoch, best_epoch=best_epoch)

    @transition("on_acks")
    def on_acks(self, acks: Mapping[str, Ack]) -> None:
        """Every P wrote its checkpoint of this epoch."""
        self._all(acks, "epoch ack")
        for p in self.passives:
            if acks[p].epoch != self.epoch:
                raise RemoteProtocolError(f"acknowledged epoch {acks[p].epoch}, expected "
                                          f"{self.epoch}", peer=p)

    @transition("stop")
    def stop(self, epoch: int, best_epoch: int, run_id: str) -> EpochCommand:
        """The end of training; ``run_id`` names the trained model (both halves store it)."""
        return EpochCommand(action="stop", epoch=epoch, best_epoch=best_epoch, run_id=run_id)

    # -- scoring ----------------------------------------------------------------
    @transition("hello")
    def hello(self, run_id: str, mode: str, k: int) -> ScoreHello:
        """Open the scoring session of loaded halves."""
        self._run_id = run_id
        return ScoreHello(run_id=run_id, mode=mode, k=k)

    @transition("on_hello_acks")
    def on_hello_acks(self, acks: Mapping[str, ScoreHelloAck], d: Mapping[str, int]) -> None:
        """Every P loaded the half of the same run, with the output width ``d[p]`` we saved.

        Raises:
            ConfigError: a passive party refused (another run, mode or k).
        """
        for p in self.passives:  # in order: a runner stops collecting at the first refusal
            self._all(acks, "scoring hello ack", p)
            ack = acks[p]
            if ack.error:
                raise ConfigError(f"{p} refused to score with this model: {ack.error}")
            if ack.run_id != self._run_id or ack.d != d[p]:
                raise RemoteProtocolError(
                    f"accepted model {ack.run_id[:12]} (d={ack.d}), expected "
                    f"{self._run_id[:12]} (d={d[p]})", peer=p)

    @transition("score")
    def score(self, rows: Rows, batch_size: int) -> ScoreRequest:
        return ScoreRequest(rows=rows.rows, id_digest=rows.digest, batch_size=batch_size)

    @transition("on_ready")
    def on_ready(self, ready: Mapping[str, ScoreReady]) -> list[str]:
        """The passive parties that refused this scoring round (empty: all serve it)."""
        self._all(ready, "scoring answer")
        return [p for p in self.passives if not ready[p].ok]


def _command_action(self: PassiveSession, cmd: EpochCommand) -> str:
    return cmd.action


class PassiveSession(Machine[Stage]):
    """P's side of the session: checks the plan, the commands and the scoring requests."""

    transitions = PASSIVE_TRANSITIONS
    aborted = Stage.ABORTED

    def __init__(self, me: str, active: str, mine: Rows, mode: str, *,
                 loaded: bool = False) -> None:
        self.me, self.active = me, active
        self.mine = mine
        self.mode = mode
        self.stage = Stage.LOADED if loaded else Stage.NEW
        self.plan: TrainPlan | None = None
        self.epoch = -1

    def _label(self) -> str:
        return f"vfl session {self.me} (passive)"

    # -- training ---------------------------------------------------------------
    def plan_error(self, plan: TrainPlan) -> str:
        """Why this party refuses ``plan`` ("" if it accepts it)."""
        a, me = self.active, self.me
        if plan.rows != self.mine.rows:
            return (f"row counts differ: {a} has {plan.rows} aligned rows, {me} has "
                    f"{self.mine.rows}; run vfl.align on both sides first")
        if plan.id_digest != self.mine.digest:
            return (f"aligned row IDs differ between {a} and {me} (same count, different IDs "
                    "or order); both must use vfl.align's output")
        if plan.mode != self.mode:
            return f"{a} asks for mode {plan.mode!r}, {me} is configured for {self.mode!r}"
        return ""

    @transition("on_plan", lambda self, plan, **_: "refuse" if self.plan_error(plan) else "accept")
    def on_plan(self, plan: TrainPlan, *, d: int, checkpoints: list[int],
                w_init: np.ndarray) -> PlanAck:
        """Step 2: accept the plan, or refuse it (send the ack, then raise ``ConfigError``)."""
        error = self.plan_error(plan)
        if error:
            return PlanAck(d=0, checkpoints=[], w_init=np.zeros((0, 0)), error=error)
        self.plan = plan
        return PlanAck(d=d, checkpoints=checkpoints, w_init=w_init, error="")

    @transition("on_command", _command_action, remote=True)
    def on_command(self, cmd: EpochCommand) -> EpochCommand:
        """Steps 4-5: ``resume`` first, then ``train`` epochs in increasing order, ``stop``."""
        assert self.plan is not None
        if cmd.action == "train":
            if cmd.epoch <= self.epoch or cmd.epoch >= self.plan.epochs:
                raise RemoteProtocolError(f"train epoch {cmd.epoch} after epoch {self.epoch} "
                                          f"of {self.plan.epochs}", peer=self.active)
        elif cmd.action == "resume" and cmd.epoch >= self.plan.epochs:
            raise RemoteProtocolError(f"resume after epoch {cmd.epoch} of {self.plan.epochs}",
                                      peer=self.active)
        if cmd.action != "stop":
            self.epoch = cmd.epoch
        return cmd

    @transition("on_epoch_end")
    def on_epoch_end(self, end: EpochEnd) -> EpochEnd:
        if end.epoch != self.epoch:
            raise RemoteProtocolError(f"end of epoch {end.epoch} during epoch {self.epoch}",
                                      peer=self.active)
        return end

    @transition("ack")
    def ack(self) -> Ack:
        """This party's checkpoint of the epoch is written."""
        return Ack(epoch=self.epoch)

    # -- scoring ----------------------------------------------------------------
    def hello_error(self, hello: ScoreHello, run_id: str, k: int) -> str:
        a, me = self.active, self.me
        if hello.run_id != run_id:
            return (f"the model halves come from different training runs: {a} loaded model "
                    f"{hello.run_id[:12]}, {me} loaded model {run_id[:12]}; load the two "
                    "files saved by the same fit()")
        if hello.mode != self.mode:
            return f"{a} scores in mode {hello.mode!r}, {me}'s model is for mode {self.mode!r}"
        if hello.k != k:
            return f"interactive width k differs: {a} {hello.k}, {me} {k}"
        return ""

    @transition("on_hello", lambda self, hello, *, run_id, k, d:
                "refuse" if self.hello_error(hello, run_id, k) else "accept")
    def on_hello(self, hello: ScoreHello, *, run_id: str, k: int, d: int) -> ScoreHelloAck:
        """Answer a scoring hello: refuse halves of another run, mode or k (then raise)."""
        return ScoreHelloAck(run_id=run_id, d=d, error=self.hello_error(hello, run_id, k))

    @transition("on_score_request")
    def on_score_request(self, req: ScoreRequest, rows: Rows) -> ScoreReady:
        """Serve ``req`` only for the same rows (count and ID digest) as ours."""
        if req.rows == rows.rows and req.id_digest == rows.digest:
            return ScoreReady(ok=True, error="")
        return ScoreReady(ok=False, error=(f"scoring rows differ: {self.active} has {req.rows} "
                                           f"rows, {self.me} has {rows.rows} (or different IDs)"))


__all__ = [
    "ACTIVE_TRANSITIONS",
    "PASSIVE_TRANSITIONS",
    "ActiveSession",
    "PassiveSession",
    "Rows",
    "Stage",
    "id_digest",
]
