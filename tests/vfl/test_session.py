"""The split trainer's session machines (vfl.session): every (event, stage) pair, a whole
session driven without a network, and the refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from party.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from party.testing import check_transitions, traced, uncovered
from vfl.messages import Ack, EpochCommand, EpochEnd, ScoreHello, ScoreRequest, TrainPlan
from vfl.session import (
    ACTIVE_TRANSITIONS,
    PASSIVE_TRANSITIONS,
    ActiveSession,
    PassiveSession,
    Rows,
    Stage,
    id_digest,
)

IDS = [f"c{i}" for i in range(10)]
MINE = Rows(10, id_digest(IDS, 10))


def _plan(**kw: Any) -> TrainPlan:
    base: dict[str, Any] = {"mode": "he", "rows": 10, "id_digest": MINE.digest, "batch_size": 4,
                            "epochs": 3, "seed": 0, "val_fraction": 0.1, "k": 2,
                            "lr_interactive": 0.05, "momentum": 0.9, "checkpoints": [0, 1]}
    base.update(kw)
    return TrainPlan(**base)


def _session(active: ActiveSession, ps: dict[str, PassiveSession], epochs: int) -> None:
    """One whole training session, then two scoring rounds (one refused by P)."""
    plan = active.plan(_plan(epochs=epochs))
    acks = {n: p.on_plan(plan, d=4, checkpoints=[1], w_init=np.zeros((0, 0)))
            for n, p in ps.items()}
    resume = active.on_plan_acks(acks)
    assert resume == 1  # newest checkpoint both hold
    for p in ps.values():
        p.on_command(active.resume(resume))
    for epoch in range(resume + 1, epochs):
        cmd = active.train(epoch, best_epoch=1)
        for p in ps.values():
            p.on_command(cmd)
        end = active.end_epoch(best_epoch=epoch)
        for p in ps.values():
            p.on_epoch_end(end)
        active.on_acks({n: p.ack() for n, p in ps.items()})
    stop = active.stop(epochs - 1, epochs - 1, "r" * 32)
    for p in ps.values():
        assert p.on_command(stop).run_id == "r" * 32
    req = active.score(MINE, 8)
    assert active.on_ready({n: p.on_score_request(req, MINE) for n, p in ps.items()}) == []
    req = active.score(Rows(9, "x"), 8)
    assert active.on_ready({n: p.on_score_request(req, MINE) for n, p in ps.items()}) == ["p1"]


def _passives() -> dict[str, PassiveSession]:
    return {"p1": PassiveSession("p1", "a", MINE, "he")}


def test_a_whole_session_takes_both_tables() -> None:
    a = ActiveSession("a", ["p1"])
    ps = _passives()
    la = ActiveSession("a", ["p1"], loaded=True)  # scoring loaded halves
    lp = PassiveSession("p1", "a", Rows(0, ""), "he", loaded=True)
    bad = PassiveSession("p1", "a", MINE, "he")  # refuses a plan with other rows
    other = PassiveSession("p1", "a", Rows(0, ""), "he", loaded=True)  # another run's half
    with traced(a, la) as at, traced(*ps.values(), lp, bad, other) as pt:
        _session(a, ps, epochs=4)
        hello = la.hello("r" * 32, "he", 2)
        la.on_hello_acks({"p1": lp.on_hello(hello, run_id="r" * 32, k=2, d=4)}, {"p1": 4})
        assert "row counts differ" in bad.on_plan(_plan(rows=11), d=4, checkpoints=[],
                                                  w_init=np.zeros((0, 0))).error
        assert "different training runs" in other.on_hello(hello, run_id="s" * 32, k=2, d=4).error
    assert uncovered(ACTIVE_TRANSITIONS, at) == []
    assert uncovered(PASSIVE_TRANSITIONS, pt) == []
    assert a.stage is Stage.TRAINED and la.stage is Stage.TRAINED and lp.stage is Stage.TRAINED
    assert bad.stage is Stage.REFUSED and other.stage is Stage.REFUSED


def test_every_pair_of_both_machines() -> None:
    plan = _plan()
    active: dict[str, Any] = {
        "plan": lambda m: m.plan(plan),
        "on_plan_acks": lambda m: m.on_plan_acks({}),
        "resume": lambda m: m.resume(-1),
        "train": lambda m: m.train(5, -1),
        "end_epoch": lambda m: m.end_epoch(-1),
        "on_acks": lambda m: m.on_acks({}),
        "stop": lambda m: m.stop(0, 0, "r"),
        "hello": lambda m: m.hello("r", "he", 2),
        "on_hello_acks": lambda m: m.on_hello_acks({}, {}),
        "score": lambda m: m.score(MINE, 4),
        "on_ready": lambda m: m.on_ready({}),
    }
    cmd = {a: EpochCommand(action=a, epoch=0, best_epoch=-1) for a in ("train", "resume", "stop")}
    hello = ScoreHello(run_id="r", mode="he", k=2)
    passive: dict[str, Any] = {
        "on_plan[accept]": lambda m: m.on_plan(plan, d=4, checkpoints=[], w_init=np.zeros((0, 0))),
        "on_plan[refuse]": lambda m: m.on_plan(_plan(mode="plaintext"), d=4, checkpoints=[],
                                               w_init=np.zeros((0, 0))),
        "on_command[resume]": lambda m: m.on_command(cmd["resume"]),
        "on_command[train]": lambda m: m.on_command(cmd["train"]),
        "on_command[stop]": lambda m: m.on_command(cmd["stop"]),
        "on_epoch_end": lambda m: m.on_epoch_end(EpochEnd(epoch=-5, best_epoch=-1)),
        "ack": lambda m: m.ack(),
        "on_hello[accept]": lambda m: m.on_hello(hello, run_id="r", k=2, d=4),
        "on_hello[refuse]": lambda m: m.on_hello(hello, run_id="s", k=2, d=4),
        "on_score_request": lambda m: m.on_score_request(
            ScoreRequest(rows=10, id_digest=MINE.digest, batch_size=4), MINE),
    }

    def make_passive() -> PassiveSession:
        m = PassiveSession("p1", "a", MINE, "he")
        m.plan = plan
        return m

    assert check_transitions(lambda: ActiveSession("a", ["p1"]), active, Stage) == \
        len(ACTIVE_TRANSITIONS) * len(Stage)
    assert check_transitions(make_passive, passive, Stage) == len(PASSIVE_TRANSITIONS) * len(Stage)


def test_a_command_out_of_order_is_the_active_partys_fault() -> None:
    p = PassiveSession("p1", "a", MINE, "he")
    p.on_plan(_plan(), d=4, checkpoints=[], w_init=np.zeros((0, 0)))
    with pytest.raises(RemoteProtocolError, match=r"asks for on_command\(\) \(train\) in stage PLANNED"):
        p.on_command(EpochCommand(action="train", epoch=0, best_epoch=-1))
    assert p.stage is Stage.ABORTED
    with pytest.raises(LocalProtocolError):
        p.ack()
    q = PassiveSession("p1", "a", MINE, "he")
    q.on_plan(_plan(), d=4, checkpoints=[], w_init=np.zeros((0, 0)))
    q.on_command(EpochCommand(action="resume", epoch=1, best_epoch=-1))
    with pytest.raises(RemoteProtocolError, match="train epoch 1 after epoch 1"):
        q.on_command(EpochCommand(action="train", epoch=1, best_epoch=-1))  # a replayed epoch


def test_the_active_side_refuses_refusals_and_wrong_acks() -> None:
    a = ActiveSession("a", ["p1", "p2"])
    plan = a.plan(_plan())
    p1 = PassiveSession("p1", "a", MINE, "plaintext")
    with pytest.raises(ConfigError, match=r"p1 refused the training plan: .*mode 'he'"):
        a.on_plan_acks({"p1": p1.on_plan(plan, d=4, checkpoints=[], w_init=np.zeros((0, 0)))})
    b = ActiveSession("a", ["p1"])
    b.plan(plan)
    b.on_plan_acks({"p1": PassiveSession("p1", "a", MINE, "he").on_plan(
        plan, d=4, checkpoints=[], w_init=np.zeros((0, 0)))})
    b.resume(-1)
    b.train(0, -1)
    b.end_epoch(0)
    with pytest.raises(RemoteProtocolError, match="acknowledged epoch 3, expected 0"):
        b.on_acks({"p1": Ack(epoch=3)})
