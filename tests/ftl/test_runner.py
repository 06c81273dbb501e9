"""train_ftl / predict_ftl over party.Party: in memory, once over gRPC, checkpoints, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ftl.trainer as trainer
from ftl import predict_ftl, train_ftl, train_plaintext
from ftl.data import GuestData, HostData
from party.errors import ConfigError
from party.testing import run_parties
from tests.ftl.helpers import Toy, small_params, toy


def _fns(t: Toy, p, **kw):
    return {
        "A": lambda party: train_ftl(party, "B", role="guest", x=t.guest.x, y=t.guest.y,
                                     overlap=t.guest.overlap, params=p, **kw),
        "B": lambda party: train_ftl(party, "A", role="host", x=t.host.x,
                                     overlap=t.host.overlap, params=p, **kw),
    }


def _predict(out, t: Toy, transport: str = "inmemory"):
    return run_parties({
        "A": lambda party: predict_ftl(party, "B", role="guest", model=out["A"].model),
        "B": lambda party: predict_ftl(party, "A", role="host", model=out["B"].model, x=t.host.x,
                                       rows_per_round=64),
    }, transport=transport)["B"]


def test_inmemory_training_and_scoring_match_plaintext() -> None:
    t = toy()
    p = small_params(epochs=3)
    out = run_parties(_fns(t, p))
    ref = train_plaintext(t.guest, t.host, p)
    a, b = out["A"], out["B"]
    assert a.epoch_losses == b.epoch_losses  # B is told A's loss each step
    np.testing.assert_allclose(a.epoch_losses, ref.epoch_losses, atol=1e-6)
    assert a.epoch_losses[-1] < a.epoch_losses[0]
    assert all(n > 0 for n in a.epoch_bytes) and b.decryptions > 0
    assert a.decryptions == 0  # training runs under B's key; A's key serves prediction
    scores = _predict(out, t)  # 100 rows in two rounds of 64
    np.testing.assert_allclose(scores, ref.predict(t.host.x), atol=1e-5)


@pytest.mark.grpc
def test_training_and_scoring_over_grpc() -> None:
    t = toy()
    p = small_params(epochs=1)
    out = run_parties(_fns(t, p), transport="grpc")
    ref = train_plaintext(t.guest, t.host, p)
    np.testing.assert_allclose(out["A"].epoch_losses, ref.epoch_losses, atol=1e-6)
    scores = _predict(out, t, transport="grpc")
    np.testing.assert_allclose(scores, ref.predict(t.host.x), atol=1e-5)


def test_resume_from_checkpoint_after_a_crash(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """threats.md row 39 (FTL): crash after epoch 1, restart, same model as uninterrupted."""
    t = toy()
    p = small_params(epochs=3)
    real_save = trainer.save_checkpoint

    class Crash(RuntimeError):
        pass

    def save_then_crash(path, model, epoch, res, n_features):
        real_save(path, model, epoch, res, n_features)
        if epoch == 1:
            raise Crash(f"simulated crash after epoch {epoch}")

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        run_parties(_fns(t, p, checkpoint_dir=tmp_path))
    assert (tmp_path / "ftl-guest.pt").exists() and (tmp_path / "ftl-host.pt").exists()
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    out = run_parties(_fns(t, p, checkpoint_dir=tmp_path))
    assert len(out["A"].epoch_seconds) == 1  # only epoch 2 was trained after the restart
    assert len(out["A"].epoch_losses) == 3
    ref = train_plaintext(t.guest, t.host, p)
    np.testing.assert_allclose(out["A"].epoch_losses, ref.epoch_losses, atol=1e-6)
    np.testing.assert_allclose(out["B"].model.net.weight().detach().numpy(),
                               ref.host.net.weight().detach().numpy(), atol=1e-6)
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_with_other_feature_count_is_refused(tmp_path: Path) -> None:
    t = toy()
    p = small_params(epochs=1)
    run_parties(_fns(t, p, checkpoint_dir=tmp_path))
    wider = Toy(GuestData(np.hstack([t.guest.x, t.guest.x[:, :1]]), t.guest.y, t.guest.overlap),
                t.host, t.host_y)
    with pytest.raises(ConfigError, match="feature columns"):  # refused before any message
        train_ftl(None, "B", role="guest", x=wider.guest.x, y=wider.guest.y,  # type: ignore[arg-type]
                  overlap=wider.guest.overlap, params=p, checkpoint_dir=tmp_path)


def test_no_overlap_is_a_clear_error() -> None:
    t = toy()
    empty = np.zeros(0, dtype=np.int64)
    with pytest.raises(ConfigError, match="no overlap"):
        train_ftl(None, "B", role="guest", x=t.guest.x, y=t.guest.y,  # type: ignore[arg-type]
                  overlap=empty)
    with pytest.raises(ConfigError, match="no overlap"):
        HostData(t.host.x, empty)


def test_labels_on_the_wrong_side() -> None:
    t = toy()
    with pytest.raises(ConfigError, match="labels on the wrong side"):
        train_ftl(None, "A", role="host", x=t.host.x, y=t.host_y,  # type: ignore[arg-type]
                  overlap=t.host.overlap)
    with pytest.raises(ConfigError, match="labels on the wrong side"):
        train_ftl(None, "B", role="guest", x=t.guest.x,  # type: ignore[arg-type]
                  overlap=t.guest.overlap)
    p = small_params(epochs=1)
    with pytest.raises(ConfigError, match="labels on the wrong side"):
        run_parties({
            "A": lambda party: train_ftl(party, "B", role="guest", x=t.guest.x, y=t.guest.y,
                                         overlap=t.guest.overlap, params=p),
            "B": lambda party: train_ftl(party, "A", role="guest", x=t.guest.x, y=t.guest.y,
                                         overlap=t.guest.overlap, params=p),
        })


def test_mismatched_dimensions_are_clear_errors() -> None:
    t = toy()
    with pytest.raises(ConfigError, match="dim"):
        run_parties({
            "A": lambda party: train_ftl(party, "B", role="guest", x=t.guest.x, y=t.guest.y,
                                         overlap=t.guest.overlap, params=small_params(dim=4)),
            "B": lambda party: train_ftl(party, "A", role="host", x=t.host.x,
                                         overlap=t.host.overlap, params=small_params(dim=3)),
        })
    with pytest.raises(ConfigError, match="overlap sizes differ"):
        run_parties({
            "A": lambda party: train_ftl(party, "B", role="guest", x=t.guest.x, y=t.guest.y,
                                         overlap=t.guest.overlap, params=small_params()),
            "B": lambda party: train_ftl(party, "A", role="host", x=t.host.x,
                                         overlap=t.host.overlap[:-5], params=small_params()),
        })
    with pytest.raises(ConfigError, match="one per row"):
        GuestData(t.guest.x, t.guest.y[:-1], t.guest.overlap)
    with pytest.raises(ConfigError, match="out of range"):
        HostData(t.host.x, np.array([0, 10_000]))
    with pytest.raises(ConfigError, match="NaN"):
        HostData(np.full((3, 2), np.nan), np.array([0]))


def test_peer_that_disconnects_mid_training_is_reported_at_once() -> None:
    """A host that dies after its first step: the guest gets PartyUnavailable, not a hang."""
    from party import InMemoryNetwork, PartyUnavailable

    t = toy()
    p = small_params(epochs=2, timeout_s=120.0)
    net = InMemoryNetwork(["A", "B"])

    def host_dies(party):
        from ftl.messages import GuestForward, Hello
        from ftl.protocol import FtlHost
        from party import Tag
        from party.handshake import open_run

        sm = FtlHost(t.host, p)
        open_run(party, ["A"], protocol="ftl", session="ftl", timeout_s=60)
        tag = Tag("ftl", "ftl", 0, "hello")
        party.send("A", tag, sm.hello())
        sm.on_hello(party.recv("A", tag, Hello, timeout_s=60))
        tg = Tag("ftl", "ftl", 0, "0")
        party.send("A", tg.at("0/host_forward"), sm.begin_step(0, 0))
        party.recv("A", tg.at("0/guest_forward"), GuestForward, timeout_s=60)
        net.disconnect("B")

    import time

    t0 = time.monotonic()
    with pytest.raises(PartyUnavailable):
        run_parties({
            "A": lambda party: train_ftl(party, "B", role="guest", x=t.guest.x, y=t.guest.y,
                                         overlap=t.guest.overlap, params=p, rejoin_s=0),
            "B": host_dies,
        }, network=net)
    assert time.monotonic() - t0 < 60


def test_only_the_killed_host_is_restarted_and_the_guest_resumes_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 12, case 5 for FTL: the host dies without a word mid-epoch 1; the guest's one
    train_ftl call waits, the restarted host rejoins, both resume from their checkpoints."""
    import threading

    from ftl.protocol import FtlHost
    from party import InMemoryNetwork, Party

    t = toy()
    p = small_params(epochs=3)
    net = InMemoryNetwork(["A", "B"])
    real = FtlHost.on_guest_backward
    calls = {"n": 0}

    def crash(self, msg):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == self.steps(0) + 1:  # the first step of epoch 1 (both mid-epoch)
            net.disconnect("B", "killed (kill -9)")
            raise SystemExit("killed")
        return real(self, msg)

    monkeypatch.setattr(FtlHost, "on_guest_backward", crash)
    out: dict[str, object] = {}

    def guest() -> None:
        out["A"] = train_ftl(Party("A", net.transport("A")), "B", role="guest", x=t.guest.x,
                             y=t.guest.y, overlap=t.guest.overlap, params=p,
                             checkpoint_dir=tmp_path / "A", rejoin_s=60)

    th = threading.Thread(target=guest, daemon=True)
    th.start()
    with pytest.raises(SystemExit):
        train_ftl(Party("B", net.transport("B")), "A", role="host", x=t.host.x,
                  overlap=t.host.overlap, params=p, checkpoint_dir=tmp_path / "B")
    monkeypatch.setattr(FtlHost, "on_guest_backward", real)
    out["B"] = train_ftl(Party("B", net.transport("B")), "A", role="host", x=t.host.x,
                         overlap=t.host.overlap, params=p, checkpoint_dir=tmp_path / "B")
    th.join(120)
    ref = train_plaintext(t.guest, t.host, p)
    np.testing.assert_allclose(out["A"].epoch_losses, ref.epoch_losses, atol=1e-6)  # type: ignore[attr-defined]
    assert len(out["A"].epoch_losses) == 3  # type: ignore[attr-defined]
