"""Split training over the party layer: both modes, resume after a crash, bad input."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from party import InMemoryNetwork, Party, Role
from party.errors import ConfigError
from party.testing import spy_received
from vfl.split import default_active, default_passive
from vfl.trainer import ActiveTrainer, PassiveTrainer, TrainConfig, TrainingInterrupted

ROWS = 240


@pytest.fixture(scope="module")
def data(data_dir: Path) -> dict[str, Any]:
    g = np.loadtxt(data_dir / "fate" / "default_credit_hetero_guest.csv", delimiter=",",
                   skiprows=1, max_rows=ROWS + 60)
    h = np.loadtxt(data_dir / "fate" / "default_credit_hetero_host.csv", delimiter=",",
                   skiprows=1, max_rows=ROWS + 60)
    assert (g[:, 0] == h[:, 0]).all()
    return {"ids": [str(int(i)) for i in g[:, 0]], "y": g[:, 1], "xa": g[:, 2:], "xp": h[:, 1:]}


def cfg(mode: str, **kw: Any) -> TrainConfig:
    base = {"mode": mode, "epochs": 2, "batch_size": 64, "eval_batch_size": 128,
            "val_fraction": 0.25, "timeout_s": 60.0}
    return TrainConfig(**{**base, **kw})


def run(fns: dict[str, Any], roles: dict[str, Role]) -> dict[str, Any]:
    """Run parties in threads over one in-memory network; returns results or exceptions."""
    net = InMemoryNetwork(list(fns))
    out: dict[str, Any] = {}

    def body(name: str) -> None:
        try:
            out[name] = fns[name](Party(name, net.transport(name), role=roles[name]), net)
        except BaseException as e:
            out[name] = e
            net.disconnect(name)

    ts = [threading.Thread(target=body, args=(n,), daemon=True) for n in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
        assert not t.is_alive(), "party hung"
    return out


def train_pair(data: dict[str, Any], c: TrainConfig, *, rows: int = ROWS, ckpt: Path | None = None,
               passive_cfg: TrainConfig | None = None, p_rows: int | None = None,
               p_ids: list[str] | None = None, p_event: Any = None, a_event: Any = None,
               score: bool = True,
               n_passive: int = 1) -> dict[str, Any]:
    xa, y, ids = data["xa"][:rows], data["y"][:rows], data["ids"][:rows]
    names = [f"fintech{i}" if n_passive > 1 else "fintech" for i in range(n_passive)]
    split = np.array_split(np.arange(data["xp"].shape[1]), n_passive)
    models = {n: default_passive(len(cols), hidden=8, d=4, seed=3 + i)
              for i, (n, cols) in enumerate(zip(names, split, strict=True))}
    head = default_active(xa.shape[1], hidden=8, d=4, k=3, seed=2)

    def a_cfg() -> TrainConfig:
        return TrainConfig(**{**c.__dict__, "checkpoint_dir": str(ckpt / "bank") if ckpt else None})

    def bank(party: Party, net: InMemoryNetwork) -> Any:
        ev = (lambda k, i: a_event(k, i, net)) if a_event else None
        t = ActiveTrainer(party, names, head, xa, y, ids=ids, config=a_cfg(), on_event=ev)
        res = t.fit()
        prob = t.predict(data["xa"][rows:], ids=data["ids"][rows:]) if score else None
        return res, prob

    def fintech(name: str, cols: np.ndarray) -> Any:
        def fn(party: Party, net: InMemoryNetwork) -> Any:
            pr = p_rows or rows
            pc = passive_cfg or c
            pc = TrainConfig(**{**pc.__dict__,
                                "checkpoint_dir": str(ckpt / name) if ckpt else None})
            ev = (lambda k, i: p_event(k, i, net)) if p_event else None
            t = PassiveTrainer(party, "bank", models[name], data["xp"][:pr][:, cols],
                               ids=p_ids or data["ids"][:pr], config=pc, on_event=ev)
            t.fit()
            if score:
                t.predict(data["xp"][rows:][:, cols], ids=data["ids"][rows:])
            return t
        return fn

    fns: dict[str, Any] = {"bank": bank}
    roles = {"bank": Role.ACTIVE}
    for n, cols in zip(names, split, strict=True):
        fns[n] = fintech(n, cols)
        roles[n] = Role.PASSIVE
    return run(fns, roles)


def ok(out: dict[str, Any]) -> tuple[Any, np.ndarray]:
    for v in out.values():
        if isinstance(v, BaseException):
            raise v
    return out["bank"]


def test_he_and_plaintext_train_the_same_model(data: dict[str, Any]) -> None:
    res_p, prob_p = ok(train_pair(data, cfg("plaintext")))
    res_h, prob_h = ok(train_pair(data, cfg("he")))
    assert len(res_p.history) == len(res_h.history) == 2
    for mp, mh in zip(res_p.history, res_h.history, strict=True):
        assert abs(mp["train_loss"] - mh["train_loss"]) < 1e-4
        assert abs(mp["val_auc"] - mh["val_auc"]) < 2e-3
        assert {"val_loss", "val_auc", "val_ks", "val_accuracy"} <= set(mh)
    np.testing.assert_allclose(prob_h, prob_p, atol=1e-4)
    assert prob_p.shape == (60,) and np.isfinite(prob_p).all()


@pytest.mark.parametrize("mode", ["plaintext", "he"])
def test_two_passive_parties(data: dict[str, Any], mode: str) -> None:
    res, prob = ok(train_pair(data, cfg(mode, epochs=1), n_passive=2))
    assert len(res.history) == 1 and np.isfinite(prob).all()


def _crash_at(epoch: int, step: int):  # type: ignore[no-untyped-def]
    def ev(kind: str, info: dict[str, Any], net: InMemoryNetwork) -> None:
        if kind == "step" and info["epoch"] == epoch and info["step"] == step:
            raise RuntimeError("fintech killed")
    return ev


@pytest.mark.parametrize("mode", ["plaintext", "he"])
def test_passive_killed_mid_epoch_resumes_to_the_same_model(
    data: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    c = cfg(mode, epochs=3, patience=5)
    _, ref = ok(train_pair(data, c, ckpt=tmp_path / "ref"))
    crashed = train_pair(data, c, ckpt=tmp_path / "run", p_event=_crash_at(1, 2), score=False)
    err = crashed["bank"]
    assert isinstance(err, TrainingInterrupted)
    msg = str(err)
    assert "fintech" in msg and "epoch 1" in msg and "checkpoint: epoch 0" in msg
    res, prob = ok(train_pair(data, c, ckpt=tmp_path / "run"))
    assert res.resumed_from == 0 and len(res.history) == 3
    if mode == "plaintext":
        np.testing.assert_array_equal(prob, ref)
    else:  # fresh keys and masks after the restart: equal up to CKKS rounding
        np.testing.assert_allclose(prob, ref, atol=1e-4)


def test_active_killed_mid_epoch_resumes(data: dict[str, Any], tmp_path: Path) -> None:
    c = cfg("plaintext", epochs=3, patience=5)
    _, ref = ok(train_pair(data, c, ckpt=tmp_path / "ref"))
    crashed = train_pair(data, c, ckpt=tmp_path / "run", a_event=_crash_at(2, 1), score=False)
    assert isinstance(crashed["fintech"], TrainingInterrupted)
    assert "bank" in str(crashed["fintech"]) and "checkpoint: epoch 1" in str(crashed["fintech"])
    res, prob = ok(train_pair(data, c, ckpt=tmp_path / "run"))
    assert res.resumed_from == 1
    np.testing.assert_array_equal(prob, ref)


def test_checkpoint_writes_are_atomic(data: dict[str, Any], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while writing leaves the previous checkpoint intact and no partial file."""
    import torch

    ok(train_pair(data, cfg("plaintext", epochs=1), ckpt=tmp_path, score=False))
    before = {p: (tmp_path / p / "epoch-0000.pt").read_bytes() for p in ("bank", "fintech")}
    real_save = torch.save

    def dying_save(obj: Any, f: Any) -> None:
        real_save(obj, f)
        with open(f, "r+b") as fh:
            fh.truncate(100)  # half-written ...
        raise KeyboardInterrupt("killed while writing")  # ... then the process dies

    monkeypatch.setattr(torch, "save", dying_save)
    out = train_pair(data, cfg("plaintext", epochs=2), ckpt=tmp_path, score=False)
    assert isinstance(out["fintech"], KeyboardInterrupt)  # the fintech writes first
    assert isinstance(out["bank"], TrainingInterrupted)
    for p in ("bank", "fintech"):
        assert (tmp_path / p / "epoch-0000.pt").read_bytes() == before[p]
        assert not (tmp_path / p / "epoch-0001.pt").exists()
        assert not list((tmp_path / p).glob(".*.tmp"))
    (tmp_path / "bank" / ".epoch-0001.pt.stale.tmp").write_bytes(b"x")  # left by kill -9
    monkeypatch.setattr(torch, "save", real_save)
    ok(train_pair(data, cfg("plaintext", epochs=2), ckpt=tmp_path, score=False))
    assert not list((tmp_path / "bank").glob(".*.tmp"))


def test_he_transcript_of_the_active_party(data: dict[str, Any]) -> None:
    """In HE mode the bank receives no plaintext activation or weight (threats.md row 23)."""
    net = InMemoryNetwork(["bank", "fintech"])
    tb = net.transport("bank")
    seen = spy_received(tb)
    c = cfg("he", epochs=1)
    xa, y = data["xa"][:100], data["y"][:100]

    def bank(party: Party, net: InMemoryNetwork) -> Any:
        return ActiveTrainer(Party("bank", tb, role=Role.ACTIVE), ["fintech"],
                             default_active(xa.shape[1], hidden=8, d=4, k=3), xa, y, config=c).fit()

    def fin(party: Party, net2: InMemoryNetwork) -> Any:
        return PassiveTrainer(Party("fintech", net.transport("fintech")), "bank",
                              default_passive(data["xp"].shape[1], hidden=8, d=4),
                              data["xp"][:100], config=c).fit()

    ok(run({"bank": bank, "fintech": fin}, {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}))
    kinds = {type(m).__name__ for m in seen}
    # RunHello/RunConfirm: the run handshake (names, incarnations, nonces, the mode)
    assert kinds <= {"RunHello", "RunConfirm", "PlanAck", "PublicContext", "EncActivations",
                     "ForwardShare", "MaskedBackward", "Ack"}, kinds
    assert all(m.w_init.size == 0 for m in seen if type(m).__name__ == "PlanAck")


def test_checkpoint_of_another_run_refused(data: dict[str, Any], tmp_path: Path) -> None:
    ok(train_pair(data, cfg("plaintext", epochs=1), ckpt=tmp_path, score=False))
    out = train_pair(data, cfg("plaintext", epochs=2, batch_size=32), ckpt=tmp_path, score=False)
    assert isinstance(out["bank"], ConfigError) and "another run" in str(out["bank"])


def test_mismatched_row_counts(data: dict[str, Any]) -> None:
    out = train_pair(data, cfg("plaintext"), p_rows=ROWS - 3, score=False)
    assert isinstance(out["fintech"], ConfigError) and "row counts differ" in str(out["fintech"])
    assert isinstance(out["bank"], ConfigError) and "refused" in str(out["bank"])


def test_mismatched_ids(data: dict[str, Any]) -> None:
    ids = list(data["ids"][:ROWS])
    ids[5], ids[6] = ids[6], ids[5]
    out = train_pair(data, cfg("plaintext"), p_ids=ids, score=False)
    assert isinstance(out["fintech"], ConfigError) and "IDs differ" in str(out["fintech"])
    assert isinstance(out["bank"], ConfigError)


def test_mode_mismatch(data: dict[str, Any]) -> None:
    out = train_pair(data, cfg("plaintext"), passive_cfg=cfg("he"), score=False)
    assert isinstance(out["fintech"], ConfigError) and "mode" in str(out["fintech"])


def test_nan_features_refused(data: dict[str, Any]) -> None:
    x = data["xp"][:ROWS].copy()
    x[7, 2] = np.nan
    net = InMemoryNetwork(["bank", "fintech"])
    with pytest.raises(ValueError, match=r"NaN.*row 7, column 2"):
        PassiveTrainer(Party("fintech", net.transport("fintech")), "bank",
                       default_passive(x.shape[1]), x)
    with pytest.raises(ValueError, match="labels"):
        ActiveTrainer(Party("bank", net.transport("bank")), ["fintech"],
                      default_active(3), np.zeros((4, 3)), np.array([0, 1, 2, 0]))


def test_label_leak_defence_noises_the_gradient(data: dict[str, Any]) -> None:
    seen: dict[float, list[np.ndarray]] = {}
    for sigma in (0.0, 5.0):
        grads: list[np.ndarray] = []
        c = cfg("plaintext", epochs=1, grad_noise=sigma)
        def bank(party: Party, net: InMemoryNetwork, c: TrainConfig = c) -> Any:
            xa, y = data["xa"][:ROWS], data["y"][:ROWS]
            return ActiveTrainer(party, ["fintech"], default_active(xa.shape[1], seed=2), xa, y,
                                 config=c).fit()

        def fin(party: Party, net: InMemoryNetwork, c: TrainConfig = c,
                grads: list[np.ndarray] = grads) -> Any:
            return PassiveTrainer(party, "bank", default_passive(data["xp"].shape[1], seed=3),
                                  data["xp"][:ROWS], config=c,
                                  on_gradient=lambda idx, g: grads.append(g)).fit()

        ok(run({"bank": bank, "fintech": fin}, {"bank": Role.ACTIVE, "fintech": Role.PASSIVE}))
        seen[sigma] = grads
    first_clean, first_noisy = seen[0.0][0], seen[5.0][0]
    assert not np.allclose(first_clean, first_noisy)
    noise = first_noisy - first_clean
    assert 0.5 < noise.std() * first_clean.shape[0] / 5.0 < 2.0  # σ / batch_rows as documented


def test_scoring_rows_must_match(data: dict[str, Any]) -> None:
    def bank(party: Party, net: InMemoryNetwork) -> Any:
        t = ActiveTrainer(party, ["fintech"], default_active(data["xa"].shape[1]),
                          data["xa"][:100], data["y"][:100], config=cfg("plaintext", epochs=1))
        t.fit()
        return t.predict(data["xa"][100:150])

    def fin(party: Party, net: InMemoryNetwork) -> Any:
        t = PassiveTrainer(party, "bank", default_passive(data["xp"].shape[1]),
                           data["xp"][:100], config=cfg("plaintext", epochs=1))
        t.fit()
        return t.predict(data["xp"][100:140])

    out = run({"bank": bank, "fintech": fin}, {"bank": Role.ACTIVE, "fintech": Role.PASSIVE})
    assert isinstance(out["fintech"], ConfigError) and "scoring rows differ" in str(out["fintech"])
    assert isinstance(out["bank"], ConfigError)


def test_he_scoring_never_falls_back_to_plaintext(data: dict[str, Any]) -> None:
    from party.errors import LocalProtocolError

    net = InMemoryNetwork(["bank", "fintech"])
    p = PassiveTrainer(Party("fintech", net.transport("fintech")), "bank",
                       default_passive(data["xp"].shape[1]), data["xp"][:50], config=cfg("he"))
    with pytest.raises(LocalProtocolError, match="fit"):
        p.predict(data["xp"][:50])
    a = ActiveTrainer(Party("bank", net.transport("bank")), ["fintech"],
                      default_active(data["xa"].shape[1]), data["xa"][:50], data["y"][:50],
                      config=cfg("he"))
    with pytest.raises(LocalProtocolError, match="fit"):
        a.predict(data["xa"][:50])


@pytest.mark.parametrize("mode", ["plaintext", "he"])
def test_only_the_killed_party_is_restarted_and_the_survivor_resumes(
    data: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    """Issue 12, case 5: after kill -9 of the fintech mid-epoch, the bank used to exit and
    both had to be restarted. Now the bank waits, the restarted fintech rejoins, and the
    bank's one fit() call ends with the uninterrupted run's model."""
    c = cfg(mode, epochs=3, patience=5)
    _, ref = ok(train_pair(data, c, ckpt=tmp_path / "ref"))
    rows = ROWS
    xa, y, ids = data["xa"][:rows], data["y"][:rows], data["ids"][:rows]
    net = InMemoryNetwork(["bank", "fintech"])
    out: dict[str, Any] = {}

    def bank() -> None:
        try:
            t = ActiveTrainer(Party("bank", net.transport("bank"), role=Role.ACTIVE), ["fintech"],
                              default_active(xa.shape[1], hidden=8, d=4, k=3, seed=2), xa, y,
                              ids=ids, config=TrainConfig(**{**c.__dict__, "checkpoint_dir":
                                                             str(tmp_path / "run" / "bank")}))
            out["res"] = t.fit()
            out["prob"] = t.predict(data["xa"][rows:], ids=data["ids"][rows:])
        except BaseException as e:
            out["err"] = e

    def fintech(crash: bool) -> PassiveTrainer:
        def ev(kind: str, info: dict[str, Any]) -> None:
            if crash and kind == "step" and info["epoch"] == 1 and info["step"] == 2:
                net.disconnect("fintech", "killed (kill -9)")  # dies without a word
                raise SystemExit("killed")
        pc = TrainConfig(**{**c.__dict__, "checkpoint_dir": str(tmp_path / "run" / "fintech")})
        return PassiveTrainer(Party("fintech", net.transport("fintech"), role=Role.PASSIVE), "bank",
                              default_passive(data["xp"].shape[1], hidden=8, d=4, seed=3),
                              data["xp"][:rows], ids=ids, config=pc, on_event=ev)

    th = threading.Thread(target=bank, daemon=True)
    th.start()
    with pytest.raises(SystemExit):
        fintech(crash=True).fit()
    t2 = fintech(crash=False)  # the operator restarts the fintech only
    t2.fit()
    t2.predict(data["xp"][rows:], ids=data["ids"][rows:])
    th.join(120)
    assert "err" not in out, out.get("err")
    assert out["res"].resumed_from == 0 and len(out["res"].history) == 3
    if mode == "plaintext":
        np.testing.assert_array_equal(out["prob"], ref)
    else:  # fresh keys and masks after the rejoin: equal up to CKKS rounding
        np.testing.assert_allclose(out["prob"], ref, atol=1e-4)


def test_a_killed_party_that_never_returns_is_named_when_the_window_ends(
    data: dict[str, Any]
) -> None:
    c = cfg("plaintext", epochs=2, rejoin_s=1.0)
    xa, y = data["xa"][:ROWS], data["y"][:ROWS]
    net = InMemoryNetwork(["bank", "fintech"])
    out: dict[str, Any] = {}

    def bank() -> None:
        try:
            ActiveTrainer(Party("bank", net.transport("bank")), ["fintech"],
                          default_active(xa.shape[1], hidden=8, d=4, k=3), xa, y, config=c).fit()
        except BaseException as e:
            out["err"] = e

    def ev(kind: str, info: dict[str, Any]) -> None:
        if kind == "step" and info["step"] == 2:
            net.disconnect("fintech", "killed")
            raise SystemExit("killed")

    th = threading.Thread(target=bank, daemon=True)
    th.start()
    with pytest.raises(SystemExit):
        PassiveTrainer(Party("fintech", net.transport("fintech")), "bank",
                       default_passive(data["xp"].shape[1], hidden=8, d=4),
                       data["xp"][:ROWS], config=c, on_event=ev).fit()
    th.join(30)
    err = out["err"]
    assert isinstance(err, TrainingInterrupted) and "fintech did not rejoin within 1 s" in str(err)
